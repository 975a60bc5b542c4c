/**
 * The node proxy's HBONE side: the inbound listener (default :15008) where other nodes'
 * tunnels arrive, and the outbound client that tunnels traffic for workloads on other
 * nodes, presenting the source workload's certificate. Certificates come from the
 * node's certificate store (local workloads only, rotated); the listener presents the
 * node proxy's own identity, and a node expects that identity from the node it dials.
 *
 * What a tunnel carries on the wire: `CONNECT <workload ip>:<port>` with
 * `forwarded: for=<source workload ip>` (RFC 7239), so the receiving node can name the
 * source workload; it believes the address only when that workload's identity is the
 * peer's certificate's.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { CertificateStore } from '../identity/store.js';
import {
  expectSpiffeId, HboneClient, HboneError, HboneServer,
  type HboneServerEvent, type TunnelDecision, type TunnelRequest, type SocketAddress,
} from '../hbone/index.js';
import type { Connection } from '../deps.js';
import { DialError, type Dialer } from '../upstream/dialer.js';
import type { ConnInfo } from './context.js';
import type { ProxyState, TunnelNode } from './state.js';

/** The stable code of a refusal to tunnel traffic that has no local source workload. */
export const NO_SOURCE_IDENTITY = 'AMBIT_ERR_NO_SOURCE_IDENTITY';

export interface MeshTlsOptions {
  store: CertificateStore;
  /** The node proxy's own SPIFFE ID: its HBONE listener's certificate, and what other nodes must present. */
  nodeIdentity: string;
  /** Where the HBONE listener listens. */
  listen: SocketAddress;
  /** Time to open a tunnel (TCP, TLS, HTTP/2, CONNECT answer). */
  connectTimeoutMs: number;
}

export interface TunnelSource {
  address: string;
  /** The source workload's SPIFFE ID; undefined when the client is not a workload of this node. */
  identity?: string;
}

/** `for=10.0.0.1` / `for="[fd00::1]"`. */
export function forwardedFor(address: string): string {
  return net.isIPv6(address) ? `for="[${address}]"` : `for=${address}`;
}

/** The first `for=` address of a `forwarded` header, if it is an IP address. */
export function parseForwardedFor(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  const m = text ? /(?:^|[;,\s])for=("?)\[?([0-9a-fA-F:.]+)\]?\1/i.exec(text) : null;
  const ip = m?.[2];
  return ip && net.isIP(ip) !== 0 ? ip : undefined;
}

export type TunnelAdmission =
  | { ok: true; conn: ConnInfo; tls: NonNullable<Connection['tls']> }
  | { ok: false; status: number; reason: string };

/**
 * Whether a CONNECT from another node may go on, and as what: only to a workload of this
 * node; its source is the peer certificate's identity, and the source workload is the one
 * the `forwarded` address names only when that workload has that identity (otherwise
 * the tunnel is refused: a wrong SPIFFE ID for that source).
 */
export function admitTunnel(state: ProxyState, req: TunnelRequest): TunnelAdmission {
  const to = `${req.authority.address}:${req.authority.port}`;
  const target = state.workloadByAddress(req.authority.address);
  if (!target || target.local === false) {
    return { ok: false, status: 404, reason: `${to} is not a workload on this node; the source node's mesh config does not match this one's` };
  }
  const claimed = parseForwardedFor(req.headers.forwarded);
  const sourceWorkload = claimed ? state.workloadByAddress(claimed) : undefined;
  if (sourceWorkload && sourceWorkload.identity !== req.peerIdentity) {
    return {
      ok: false, status: 403,
      reason: `wrong SPIFFE ID: the tunnel's source ${claimed} is workload ${sourceWorkload.namespace}/${sourceWorkload.name} (${sourceWorkload.identity}), but the peer's certificate is ${req.peerIdentity}`,
    };
  }
  return {
    ok: true,
    conn: {
      direction: 'inbound',
      source: { address: claimed ?? req.source.address, port: 0, workload: sourceWorkload, identity: req.peerIdentity },
      destination: { address: req.authority.address, port: req.authority.port },
      destinationFrom: 'hbone',
    },
    tls: { version: req.tls.version, cipher: req.tls.cipher, ...(req.tls.sni ? { sni: req.tls.sni } : {}) },
  };
}

export class MeshTunnels {
  readonly server: HboneServer;
  readonly client: HboneClient;
  private readonly options: MeshTlsOptions;

  constructor(options: MeshTlsOptions, hooks: { onTunnel: (t: TunnelRequest) => TunnelDecision; onEvent: (e: HboneServerEvent) => void }) {
    this.options = options;
    const { store, nodeIdentity } = options;
    this.server = new HboneServer({
      credentials: () => store.currentTlsMaterial(nodeIdentity) ?? store.tlsMaterial(nodeIdentity),
      onTunnel: hooks.onTunnel,
      onEvent: hooks.onEvent,
    });
    this.client = new HboneClient({
      credentials: (id) => store.currentTlsMaterial(id) ?? store.tlsMaterial(id),
      connectTimeoutMs: options.connectTimeoutMs,
    });
  }

  get nodeIdentity(): string {
    return this.options.nodeIdentity;
  }

  listen(port = this.options.listen.port): Promise<SocketAddress> {
    return this.server.listen({ host: this.options.listen.address, port });
  }

  address(): SocketAddress | undefined {
    return this.server.address();
  }

  /** A dialer that tunnels to `target` through `node`, as `source`. */
  dialer(source: TunnelSource, target: SocketAddress, node: TunnelNode): Dialer {
    const where = `${target.address}:${target.port} on node ${node.name}`;
    const nodeAddress = { address: node.address, port: node.port };
    return {
      key: `hbone|${source.identity ?? '-'}|${node.address}:${node.port}`,
      open: async (timeoutMs: number): Promise<Duplex> => {
        if (!source.identity) {
          throw new DialError('connect-failure', `${NO_SOURCE_IDENTITY}: ${source.address} is not a workload of this node, so its traffic to ${where} cannot be sent over mTLS (the tunnel presents the source workload's certificate); add the client to the mesh config's workloads on this node`);
        }
        try {
          return await this.client.open({
            sourceIdentity: source.identity,
            node: nodeAddress,
            target,
            expectServer: expectSpiffeId(this.options.nodeIdentity),
            headers: { forwarded: forwardedFor(source.address) },
            ...(net.isIP(node.name) === 0 ? { servername: node.name } : {}),
            timeoutMs: timeoutMs > 0 ? timeoutMs : this.options.connectTimeoutMs,
          });
        } catch (e) {
          if (!(e instanceof HboneError)) throw e;
          const why = e.reason ? `${e.message} (${e.reason})` : e.message;
          throw new DialError(e.code === 'connect-timeout' ? 'connect-timeout' : 'connect-failure', `HBONE tunnel to ${where} failed: ${why}`, { cause: e });
        }
      },
    };
  }

  stats(): { server: ReturnType<HboneServer['stats']>; client: ReturnType<HboneClient['stats']> } {
    return { server: this.server.stats(), client: this.client.stats() };
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all([this.server.close(graceMs), this.client.close()]);
  }
}
