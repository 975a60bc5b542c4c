/**
 * Who is calling: a node proxy authenticates with its Kubernetes ServiceAccount token
 * (`authorization: Bearer …`). The controller reviews it (TokenReview), requires the node
 * proxies' ServiceAccount, and learns the caller's node from the pod the token is bound to
 * (`authentication.kubernetes.io/node-name`, else the bound pod's spec.nodeName): a node
 * proxy cannot claim another node. Reviews are cached for a minute.
 */
import type { AuthenticationV1Api, V1Pod } from '@kubernetes/client-node';
import { ControllerError, errorMessage } from '../errors.js';

export interface NodeCaller {
  node: string;
  /** `system:serviceaccount:<ns>:<name>`. */
  user: string;
  pod?: string;
}

const CACHE_MS = 60_000;

export class NodeAuthenticator {
  readonly #cache = new Map<string, { at: number; result: Promise<NodeCaller> }>();

  constructor(
    private readonly authn: AuthenticationV1Api,
    /** `namespace:name` of the node proxies' ServiceAccount. */
    private readonly nodeServiceAccount: string,
    private readonly podLookup: (namespace: string, name: string) => V1Pod | undefined,
  ) {}

  authenticate(authorization: string | undefined): Promise<NodeCaller> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    if (!m) return Promise.reject(new ControllerError('AMBIT_ERR_NODE_AUTH', 'no bearer token: send the node proxy\'s ServiceAccount token as `authorization: Bearer <token>`'));
    const token = m[1]!;
    const now = Date.now();
    const hit = this.#cache.get(token);
    if (hit && now - hit.at < CACHE_MS) return hit.result;
    const result = this.#review(token);
    this.#cache.set(token, { at: now, result });
    result.catch(() => this.#cache.delete(token));
    if (this.#cache.size > 10_000) for (const [k, v] of this.#cache) if (now - v.at >= CACHE_MS) this.#cache.delete(k);
    return result;
  }

  async #review(token: string): Promise<NodeCaller> {
    let review;
    try {
      review = await this.authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
    } catch (e) {
      throw new ControllerError('AMBIT_ERR_KUBE_API', `TokenReview failed: ${errorMessage(e)}`, { cause: e });
    }
    const status = review.status;
    if (!status?.authenticated || !status.user?.username) {
      throw new ControllerError('AMBIT_ERR_NODE_AUTH', `the token was not accepted by the API server${status?.error ? `: ${status.error}` : ''}`);
    }
    const [ns, sa] = this.nodeServiceAccount.split(':');
    const expected = `system:serviceaccount:${ns}:${sa}`;
    const user = status.user.username;
    if (user !== expected) throw new ControllerError('AMBIT_ERR_NODE_AUTH', `${user} is not the node proxies' ServiceAccount (${expected})`);
    const extra = status.user.extra ?? {};
    const podName = extra['authentication.kubernetes.io/pod-name']?.[0];
    let node = extra['authentication.kubernetes.io/node-name']?.[0];
    if (!node && podName) node = this.podLookup(ns!, podName)?.spec?.nodeName;
    if (!node) {
      throw new ControllerError('AMBIT_ERR_NODE_AUTH', `the token of ${user} is not bound to a scheduled pod, so its node is unknown: use the pod's projected ServiceAccount token`);
    }
    return { node, user, ...(podName ? { pod: podName } : {}) };
  }
}
