/**
 * The mesh CA lives in a Secret only the controller reads (Istio's `cacerts` layout:
 * ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem). When absent, the controller
 * leader generates a root CA and creates the Secret (the other replicas wait for it); should
 * two controllers still race, the one whose create fails with 409 loads the winner's. An operator-provided Secret (an intermediate
 * under their own root) is used as is. The roots are published in a ConfigMap for node
 * proxies to verify the controller with.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import { CertificateAuthority } from '@ambit/runtime';
import { ControllerError, errorMessage, statusCode } from '../errors.js';

export const CA_KEYS = { cert: 'ca-cert.pem', key: 'ca-key.pem', chain: 'cert-chain.pem', root: 'root-cert.pem' } as const;

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8'));

/**
 * The CA from its Secret. When there is none, only a replica for which `mayCreate()` is true
 * (the leader) generates it; the others wait for it to appear, looking every `waitMs`.
 */
export async function loadOrCreateCa(
  core: CoreV1Api, namespace: string, name: string, trustDomain: string, log: (m: string) => void,
  mayCreate: () => boolean = () => true, waitMs = 500, created: () => void = () => undefined,
): Promise<CertificateAuthority> {
  const read = async (): Promise<CertificateAuthority | undefined> => {
    let data: Record<string, string> | undefined;
    try {
      data = (await core.readNamespacedSecret({ name, namespace })).data;
    } catch (e) {
      if (statusCode(e) === 404) return undefined;
      throw new ControllerError('AMBIT_ERR_KUBE_API', `reading the CA Secret ${namespace}/${name}: ${errorMessage(e)}`, { cause: e });
    }
    const certPem = unb64(data?.[CA_KEYS.cert]);
    const keyPem = unb64(data?.[CA_KEYS.key]);
    if (!certPem || !keyPem) {
      throw new ControllerError('AMBIT_ERR_CA_SECRET', `the CA Secret ${namespace}/${name} lacks ${CA_KEYS.cert} or ${CA_KEYS.key}: fill it in (Istio's cacerts layout), or delete it to have a root generated`);
    }
    try {
      return CertificateAuthority.fromPem({
        trustDomain, certPem, keyPem,
        ...(data?.[CA_KEYS.chain] ? { chainPem: unb64(data[CA_KEYS.chain])! } : {}),
        ...(data?.[CA_KEYS.root] ? { rootPem: unb64(data[CA_KEYS.root])! } : {}),
      });
    } catch (e) {
      throw new ControllerError('AMBIT_ERR_CA_SECRET', `the CA in Secret ${namespace}/${name} cannot be used: ${errorMessage(e)}`, { cause: e });
    }
  };
  for (let said = false; ; said = true) {
    const existing = await read();
    if (existing) {
      log(`CA loaded from Secret ${namespace}/${name}`);
      return existing;
    }
    if (mayCreate()) break;
    if (!said) log(`no CA Secret ${namespace}/${name} yet: waiting for the leader to create it`);
    await new Promise((r) => setTimeout(r, waitMs));
  }
  const ca = CertificateAuthority.generateRoot({ trustDomain });
  created();
  const pem = ca.exportPem();
  try {
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit' } },
        type: 'Opaque',
        data: { [CA_KEYS.cert]: b64(pem.certPem), [CA_KEYS.key]: b64(pem.keyPem), [CA_KEYS.chain]: b64(pem.chainPem), [CA_KEYS.root]: b64(pem.rootPem) },
      },
    });
    log(`CA generated (a root for ${trustDomain}) and stored in Secret ${namespace}/${name}`);
    return ca;
  } catch (e) {
    if (statusCode(e) !== 409) throw new ControllerError('AMBIT_ERR_KUBE_API', `creating the CA Secret ${namespace}/${name}: ${errorMessage(e)}`, { cause: e });
    const winner = await read();
    if (!winner) throw new ControllerError('AMBIT_ERR_CA_SECRET', `the CA Secret ${namespace}/${name} was created by someone else but cannot be read`);
    return winner;
  }
}

/** Publishes the roots in a ConfigMap (key root-cert.pem), creating or updating it; false when it already holds them. */
export async function publishRoots(core: CoreV1Api, namespace: string, name: string, rootsPem: string): Promise<boolean> {
  const body = { metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit' } }, data: { [CA_KEYS.root]: rootsPem } };
  try {
    const current = await core.readNamespacedConfigMap({ name, namespace });
    if (current.data?.[CA_KEYS.root] === rootsPem) return false;
    await core.replaceNamespacedConfigMap({ name, namespace, body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } } });
  } catch (e) {
    if (statusCode(e) !== 404) throw new ControllerError('AMBIT_ERR_KUBE_API', `publishing the roots in ConfigMap ${namespace}/${name}: ${errorMessage(e)}`, { cause: e });
    await core.createNamespacedConfigMap({ namespace, body });
  }
  return true;
}
