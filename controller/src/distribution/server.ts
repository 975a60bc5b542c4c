/**
 * The controller's gRPC services: `MeshConfig.StreamConfig` (each node proxy's incremental
 * config, ACK/NACK) and `Certificates.CreateCertificate` (CSRs). Every call is
 * authenticated by the node proxy's ServiceAccount token; a stream's node is the one its
 * token's pod runs on.
 */
import * as grpc from '@grpc/grpc-js';
import { controlplane } from '@ambit/runtime';
import type { MeshModel } from '../model/mesh.js';
import { ControllerError, errorMessage } from '../errors.js';
import type { NodeCaller } from '../identity/node-auth.js';

/** Who a call comes from (NodeAuthenticator: TokenReview). */
export interface Authenticator {
  authenticate(authorization: string | undefined): Promise<NodeCaller>;
}
import { NodeSession } from './session.js';

type ConfigRequest = controlplane.ConfigRequest;
type ConfigResponse = controlplane.ConfigResponse;

export interface DistributionEvents {
  ack(node: string, version: string, latencyMs: number | undefined): void;
  nack(node: string, detail: controlplane.ErrorDetail): void;
  connected(node: string): void;
  disconnected(node: string): void;
  log(level: 'info' | 'warn', message: string): void;
}

export interface CsrHandler {
  (caller: NodeCaller, csr: string, ttlMs: number): { certChain: string; roots: string; identity: string };
}

export class Distributor {
  readonly sessions = new Map<string, Set<NodeSession>>();
  #version = 0;
  #systemVersion = 'v0';

  constructor(
    private readonly model: MeshModel,
    private readonly auth: Authenticator,
    private readonly sign: CsrHandler,
    private readonly events: DistributionEvents,
  ) {}

  get systemVersion(): string {
    return this.#systemVersion;
  }

  /** Adds both services to a gRPC server. */
  register(server: grpc.Server): void {
    const proto = controlplane.controllerProto();
    server.addService(proto.MeshConfig.service, { streamConfig: (call: grpc.ServerDuplexStream<ConfigRequest, ConfigResponse>) => this.#stream(call) });
    server.addService(proto.Certificates.service, {
      createCertificate: (call: grpc.ServerUnaryCall<controlplane.CertificateRequest, controlplane.CertificateResponse>, cb: grpc.sendUnaryData<controlplane.CertificateResponse>) => {
        void this.#csr(call, cb);
      },
    });
  }

  /** Sends every session what changed in the table (and a full diff to nodes whose scope changed). */
  push(): void {
    const changed = this.model.table.takeChanges();
    const dirty = this.model.takeDirtyNodes();
    if (changed.size === 0 && dirty.size === 0) return;
    this.#systemVersion = `v${++this.#version}`;
    for (const [node, set] of this.sessions) {
      for (const s of set) {
        let res: ConfigResponse | undefined;
        if (dirty.has(node)) {
          s.scope = this.model.scopeOf(node);
          res = s.diff(this.model.table, this.#systemVersion);
        } else {
          res = s.diff(this.model.table, this.#systemVersion, changed);
        }
        if (!res) continue;
        try {
          s.call.write(res);
        } catch (e) {
          // The stream broke between events; its close handler forgets it.
          this.events.log('warn', `config stream of node ${node}: ${errorMessage(e)}`);
        }
      }
    }
  }

  connectedNodes(): { node: string; ackedVersion: string; sent: number; lastError?: string; connectedAt: string }[] {
    return [...this.sessions.values()].flatMap((set) => [...set].map((s) => ({
      node: s.node, ackedVersion: s.ackedVersion, sent: s.sent.size, connectedAt: new Date(s.connectedAt).toISOString(), ...(s.lastError ? { lastError: s.lastError } : {}),
    })));
  }

  async #caller(call: { metadata: grpc.Metadata }): Promise<NodeCaller> {
    const auth = call.metadata.get(controlplane.AUTHORIZATION)[0];
    return this.auth.authenticate(typeof auth === 'string' ? auth : auth?.toString());
  }

  #stream(call: grpc.ServerDuplexStream<ConfigRequest, ConfigResponse>): void {
    let session: NodeSession | undefined;
    let starting: Promise<void> | undefined;
    const fail = (code: grpc.status, e: unknown) => {
      this.events.log('warn', `config stream refused: ${errorMessage(e)}`);
      call.emit('error', { code, details: `${(e as { code?: string }).code ?? 'AMBIT_ERR_NODE_AUTH'}: ${errorMessage(e)}` } as grpc.ServiceError);
    };
    call.on('data', (req: ConfigRequest) => {
      if (!session) {
        if (starting) return;
        starting = this.#caller(call).then((caller) => {
          if (req.node !== caller.node) {
            throw new ControllerError('AMBIT_ERR_NODE_AUTH', `the stream asks for node ${req.node} but the token's pod runs on ${caller.node}`);
          }
          session = new NodeSession(caller.node, call, req.initialResourceVersions ?? {}, (other, scope) => this.model.nodeConcerns(other, scope));
          session.ackedVersion = req.appliedVersion;
          let set = this.sessions.get(caller.node);
          if (!set) this.sessions.set(caller.node, (set = new Set()));
          set.add(session);
          session.scope = this.model.scopeOf(caller.node);
          this.events.connected(caller.node);
          const res = session.diff(this.model.table, this.#systemVersion);
          if (res) call.write(res);
        }).catch((e: unknown) => fail(grpc.status.PERMISSION_DENIED, e));
        return;
      }
      const sentAt = session.outstanding.get(req.responseNonce);
      // Answers to this and every earlier response are in.
      for (const n of session.outstanding.keys()) {
        session.outstanding.delete(n);
        if (n === req.responseNonce) break;
      }
      if (req.errorDetail) {
        session.lastError = `${req.errorDetail.code}: ${req.errorDetail.message}`;
        this.events.nack(session.node, req.errorDetail);
      } else if (req.responseNonce) {
        session.ackedVersion = req.appliedVersion;
        session.lastError = undefined;
        this.events.ack(session.node, req.appliedVersion, sentAt === undefined ? undefined : Date.now() - sentAt);
      }
    });
    const close = () => {
      if (!session) return;
      const set = this.sessions.get(session.node);
      set?.delete(session);
      if (set?.size === 0) this.sessions.delete(session.node);
      this.events.disconnected(session.node);
      session = undefined;
    };
    call.on('end', () => { close(); call.end(); });
    call.on('error', close);
    call.on('cancelled', close);
  }

  async #csr(call: grpc.ServerUnaryCall<controlplane.CertificateRequest, controlplane.CertificateResponse>, cb: grpc.sendUnaryData<controlplane.CertificateResponse>): Promise<void> {
    let caller: NodeCaller;
    try {
      caller = await this.#caller(call);
    } catch (e) {
      cb({ code: grpc.status.UNAUTHENTICATED, details: `${(e as { code?: string }).code ?? 'AMBIT_ERR_NODE_AUTH'}: ${errorMessage(e)}` });
      return;
    }
    try {
      const r = this.sign(caller, call.request.csr, Number(call.request.ttlMs ?? 0));
      this.events.log('info', `signed ${r.identity} for node ${caller.node}`);
      cb(null, { certChain: r.certChain, roots: r.roots });
    } catch (e) {
      this.events.log('warn', `refused a certificate request from node ${caller.node}: ${errorMessage(e)}`);
      cb({ code: grpc.status.PERMISSION_DENIED, details: `${(e as { code?: string }).code ?? 'AMBIT_ERR_CSR_DENIED'}: ${errorMessage(e)}` });
    }
  }
}
