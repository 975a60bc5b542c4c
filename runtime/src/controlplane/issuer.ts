/**
 * Workload certificates from the controller: the node proxy makes the key pair, sends a
 * PKCS#10 request over gRPC (authenticated by its ServiceAccount token) and gets back the
 * signed chain. The CA key never reaches the node. The controller signs only identities of
 * pods scheduled on this node; a refusal surfaces as IdentityError `issue-failed` with the
 * controller's reason (the certificate store retries rotations with backoff).
 */
import { generateKeyPairSync, type X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { createCsr } from '../identity/csr.js';
import { IdentityError } from '../identity/errors.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { certificatesPem, notAfter, notBefore, parseCertificates } from '../identity/x509.js';
import type { CertificateIssuer, WorkloadCertificate, WorkloadCertificateRequest } from '../identity/ca.js';
import { controllerChannel, tokenMetadata, type ControllerConnection } from './credentials.js';
import { controllerProto, type CertificateRequest, type CertificateResponse } from './proto.js';

const CALL_TIMEOUT_MS = 10_000;

export class ControllerIssuer implements CertificateIssuer {
  readonly #client: grpc.Client & Record<string, unknown>;
  #roots: readonly X509Certificate[];

  private constructor(readonly trustDomain: string, roots: readonly X509Certificate[], client: grpc.Client, private readonly connection: ControllerConnection) {
    this.#roots = roots;
    this.#client = client as grpc.Client & Record<string, unknown>;
  }

  /** A client of the controller's Certificates service; `rootsPem` are the mesh's trust anchors. */
  static async connect(connection: ControllerConnection, trustDomain: string, rootsPem: string): Promise<ControllerIssuer> {
    const { credentials, options } = await controllerChannel(connection);
    const client = new (controllerProto().Certificates)(connection.address, credentials, options);
    return new ControllerIssuer(trustDomain, parseCertificates(rootsPem, 'mesh roots'), client, connection);
  }

  trustAnchors(): readonly X509Certificate[] {
    return this.#roots;
  }

  async issueWorkloadCertificate(req: WorkloadCertificateRequest): Promise<WorkloadCertificate> {
    const id = parseSpiffeId(req.identity);
    const keys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const request: CertificateRequest = { csr: createCsr(id.uri, keys), ttlMs: req.ttlMs ?? 0 };
    const metadata = await tokenMetadata(this.connection);
    const issuedAt = new Date();
    const answer = await new Promise<CertificateResponse>((resolve, reject) => {
      const call = this.#client.createCertificate as (r: CertificateRequest, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: CertificateResponse) => void) => void;
      call.call(this.#client, request, metadata, { deadline: Date.now() + CALL_TIMEOUT_MS }, (e, v) => (e || !v ? reject(e) : resolve(v)));
    }).catch((e: unknown) => {
      const err = e as grpc.ServiceError;
      throw new IdentityError('issue-failed', `the controller did not sign ${id.uri}: ${err.details || err.message}`, { cause: e });
    });
    const [leaf, ...intermediates] = parseCertificates(answer.certChain, 'certificate from the controller');
    if (!leaf) throw new IdentityError('issue-failed', `the controller answered the request for ${id.uri} without a certificate`);
    if (!leaf.checkPrivateKey(keys.privateKey)) throw new IdentityError('issue-failed', `the controller's certificate for ${id.uri} is not for the requested key`);
    if (answer.roots) this.#roots = parseCertificates(answer.roots, 'roots from the controller');
    return {
      identity: id.uri,
      trustDomain: id.trustDomain,
      certificate: leaf,
      intermediates,
      certChainPem: certificatesPem([leaf, ...intermediates]),
      privateKey: keys.privateKey,
      serialNumber: leaf.serialNumber,
      fingerprint256: leaf.fingerprint256,
      notBefore: notBefore(leaf),
      notAfter: notAfter(leaf),
      issuedAt,
    };
  }

  close(): void {
    this.#client.close();
  }
}
