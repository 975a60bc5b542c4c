/**
 * The node's identity material, from the mesh config's `identity`: the mesh CA (loaded,
 * or generated on first start), and a certificate store holding certificates for this
 * node's workloads only, issued at start and rotated before expiry. The HBONE listener
 * presents the certificate of the workload that was dialed; there is no node identity on
 * the data path. A reload updates which
 * workloads are local; the CA and lifetimes are read once, at start.
 */
import path from 'node:path';
import type { IdentityConfig, MeshConfig } from '../config/index.js';
import { CA_FILES, CertificateAuthority, type CertificateIssuer } from '../identity/ca.js';
import { AmbitError } from '../deps.js';
import { checkCaPath } from '../identity/file-modes.js';
import { CertificateStore, type CertificateStoreDump } from '../identity/store.js';
import { summarizeCertificate, type CertificateSummary } from '../identity/ca.js';
import { workloadId } from '../identity/spiffe.js';
import type { Telemetry } from '../telemetry/types.js';

export interface NodeIdentity {
  /** The mesh CA, when this node holds it (a YAML config's `identity.ca`); undefined when the controller signs. */
  readonly ca: CertificateAuthority | undefined;
  readonly store: CertificateStore;
  /** Where the CA came from, for /config_dump. */
  readonly caSource: string;
  /** Names the local workloads of a (re)loaded config, and issues what they lack. */
  update(config: MeshConfig): Promise<void>;
  /** For /config_dump: certificates, SPIFFE IDs, fingerprints and expiry; never keys. */
  describe(): IdentityDump;
  close(): void;
}

export interface IdentityDump {
  ca: { source: string; certificate?: CertificateSummary; intermediates?: CertificateSummary[]; roots: CertificateSummary[] };
  certTtlMs: number;
  store: CertificateStoreDump;
}

/** The SPIFFE IDs this node holds certificates for: its workloads'. */
export function localIdentities(config: MeshConfig): string[] {
  const ids = new Set<string>();
  for (const w of config.workloads) {
    if ((w.node ?? config.node) === config.node) ids.add(workloadId(config.trustDomain, w.namespace, w.serviceAccount));
  }
  return [...ids].sort();
}

/**
 * Loads the mesh CA the config names, generating it first when `ca.dir` holds none yet. The
 * folder and files are checked for owner and mode first (`checkCaPath`).
 */
export async function loadCa(identity: IdentityConfig, trustDomain: string, configDir: string): Promise<{ ca: CertificateAuthority; source: string }> {
  const at = (f: string) => path.resolve(configDir, f);
  const c = identity.ca;
  if (c.dir !== undefined) {
    const dir = at(c.dir);
    await checkCaPath(dir, 'folder');
    await checkCaPath(path.join(dir, CA_FILES.key), 'key');
    for (const f of [CA_FILES.cert, CA_FILES.chain, CA_FILES.root]) await checkCaPath(path.join(dir, f), 'certificate');
    return { ca: await CertificateAuthority.loadOrCreate(dir, { trustDomain }), source: `dir ${dir}` };
  }
  await checkCaPath(at(c.keyFile!), 'key');
  for (const f of [c.certFile, c.chainFile, c.rootFile]) if (f) await checkCaPath(at(f), 'certificate');
  const certFile = at(c.certFile!);
  const ca = await CertificateAuthority.fromFiles({
    trustDomain,
    certFile,
    keyFile: at(c.keyFile!),
    ...(c.chainFile ? { chainFile: at(c.chainFile) } : {}),
    ...(c.rootFile ? { rootFile: at(c.rootFile) } : {}),
  });
  return { ca, source: `files ${certFile}` };
}

/**
 * Starts the node's identity: certificates from the CA the config names, or, with
 * `identity.ca.controller`, from `remote` (the controller, over certificate signing requests).
 */
export async function startIdentity(
  config: MeshConfig, configPath: string, telemetry: Telemetry, remote?: { issuer: CertificateIssuer; source: string },
): Promise<NodeIdentity> {
  const identity = config.identity!;
  let ca: CertificateAuthority | undefined;
  let issuer: CertificateIssuer;
  let source: string;
  if (identity.ca.controller) {
    if (!remote) {
      throw new AmbitError('AMBIT_ERR_MESH_CONFIG', 'identity.ca.controller is set but this node proxy has no controller: run it with --controller <address>, or give identity.ca a dir or files');
    }
    ({ issuer, source } = remote);
  } else {
    ({ ca, source } = await loadCa(identity, config.trustDomain, path.dirname(configPath)));
    issuer = ca;
  }
  const store = new CertificateStore({ issuer, ttlMs: identity.certTtlMs, localIdentities: localIdentities(config) });
  store.on('rotated', (e) => telemetry.info(`certificate of ${e.identity} rotated`, {
    fingerprint256: e.current.fingerprint256, notAfter: e.current.notAfter.toISOString(), previousFingerprint256: e.previous.fingerprint256,
  }));
  store.on('rotationFailed', (e) => telemetry.warn(`rotating the certificate of ${e.identity} failed; the current one keeps serving, retry in ${e.retryInMs} ms: ${e.error.message}`));
  const issueAll = async (ids: string[]) => {
    await Promise.all(ids.map((id) => store.acquire(id)));
  };
  await issueAll(localIdentities(config));
  telemetry.info(`identity: ${ca ? `CA ${ca.certificate.subject.replace(/\n/g, ', ')}` : 'certificates signed by'} (${source}); ${store.identities().length} certificates, lifetime ${identity.certTtlMs} ms`);
  return {
    ca, store, caSource: source,
    async update(next) {
      const ids = localIdentities(next);
      store.setLocalIdentities(ids);
      await issueAll(ids);
    },
    describe() {
      return {
        ca: ca
          ? { source, certificate: summarizeCertificate(ca.certificate), intermediates: ca.intermediates.map(summarizeCertificate), roots: ca.roots.map(summarizeCertificate) }
          : { source, roots: issuer.trustAnchors().map(summarizeCertificate) },
        certTtlMs: identity.certTtlMs,
        store: store.describe(),
      };
    },
    close() {
      store.close();
    },
  };
}
