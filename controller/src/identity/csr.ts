/**
 * Signing node proxies' certificate requests: the request must carry one SPIFFE ID of this
 * trust domain, `/ns/<namespace>/sa/<serviceAccount>`, and that identity must be held by a
 * running pod scheduled on the caller's node (`spec.nodeName`). A node thus gets certificates
 * only for its own workloads, ztunnel's model; the node proxy's own service account gets none
 * (its HBONE listener presents the dialed workload's certificate, never a node identity).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { parseSpiffeId, readCsr, type CertificateAuthority } from '@ambit/runtime';
import { ControllerError, errorMessage } from '../errors.js';
import type { NodeCaller } from './node-auth.js';

export interface SignOptions {
  ca: CertificateAuthority;
  certTtlMs: number;
  /** `namespace:name` of the node proxies' ServiceAccount: refused, as the data path holds no node identity. */
  nodeServiceAccount: string;
  podsOnNode: (node: string) => Iterable<V1Pod>;
}

export function signCsr(o: SignOptions, caller: NodeCaller, csrPem: string, ttlMs: number): { certChain: string; roots: string; identity: string } {
  let contents;
  try {
    contents = readCsr(csrPem);
  } catch (e) {
    throw new ControllerError('AMBIT_ERR_CSR_DENIED', errorMessage(e), { cause: e });
  }
  if (contents.uris.length !== 1) throw new ControllerError('AMBIT_ERR_CSR_DENIED', `the request carries ${contents.uris.length} URI SANs; exactly one SPIFFE ID is expected`);
  const id = parseSpiffeId(contents.uris[0]!);
  if (id.trustDomain !== o.ca.trustDomain) throw new ControllerError('AMBIT_ERR_CSR_DENIED', `${id.uri} is not in trust domain ${o.ca.trustDomain}`);
  const m = /^\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id.path);
  if (!m) throw new ControllerError('AMBIT_ERR_CSR_DENIED', `${id.uri} is not a workload identity (/ns/<namespace>/sa/<serviceAccount>)`);
  const [, ns, sa] = m;
  const [nodeNs, nodeSa] = o.nodeServiceAccount.split(':');
  if (ns === nodeNs && sa === nodeSa) {
    throw new ControllerError('AMBIT_ERR_CSR_DENIED', `${id.uri} is the node proxies' own service account: node proxies hold certificates of their workloads only, never one of their own`);
  }
  let found = false;
  for (const pod of o.podsOnNode(caller.node)) {
    const phase = pod.status?.phase;
    if (pod.metadata?.namespace === ns && (pod.spec?.serviceAccountName ?? 'default') === sa && phase !== 'Succeeded' && phase !== 'Failed') {
      found = true;
      break;
    }
  }
  if (!found) {
    throw new ControllerError('AMBIT_ERR_CSR_DENIED', `node ${caller.node} runs no pod of service account ${ns}/${sa}: a node gets certificates only for workloads scheduled on it`);
  }
  const ttl = ttlMs > 0 ? Math.min(ttlMs, o.certTtlMs) : o.certTtlMs;
  const issued = o.ca.signWorkloadKey({ identity: id.uri, ttlMs: ttl }, contents.publicKey);
  return { certChain: issued.certChainPem, roots: o.ca.rootsPem(), identity: id.uri };
}
