/** Per-connection facts the data path carries, and the filter context built from them. */
import type { Context, Direction, Peer } from '../deps.js';
import type { PeerRecord } from '../telemetry/types.js';
import { isIP } from 'node:net';
import type { ProxyState, Route, WorkloadInfo } from './state.js';

/** The route of a connection's original destination (an IP, or a service name from a listener target). */
export function connectionRoute(state: ProxyState, c: ConnInfo): Route | undefined {
  const d = c.destination;
  return state.route(c.direction, d.address, d.port)
    ?? (isIP(d.address) === 0 ? state.routeByHost?.(c.direction, `${d.address}:${d.port}`, d.port) : undefined);
}

export interface ConnInfo {
  direction: Direction;
  source: { address: string; port: number; workload?: WorkloadInfo; identity?: string };
  /** The original destination: what the client asked for. */
  destination: { address: string; port: number };
  /** How the original destination was learned. */
  destinationFrom: 'so_original_dst' | 'listener-target';
}

/** Where a socket's ConnInfo hangs (readable through the HTTP/2 session's socket proxy too). */
export const kConn: unique symbol = Symbol('ambit.conn');

export type SocketWithConn = { [kConn]?: ConnInfo };

export function connOf(socket: unknown): ConnInfo | undefined {
  const s = socket as (SocketWithConn & { stream?: SocketWithConn }) | null;
  // HTTP/2 served over a stream that is not a socket (an HBONE tunnel) runs on a socket
  // Node wraps around it, whose `stream` is the tunnel.
  return s?.[kConn] ?? s?.stream?.[kConn];
}

export function sourcePeer(c: ConnInfo): Peer {
  return {
    identity: c.source.identity,
    workload: c.source.workload?.name,
    namespace: c.source.workload?.namespace,
    address: c.source.address,
    port: c.source.port,
  };
}

export function destinationPeer(c: ConnInfo, route: Route | undefined): Peer {
  return {
    identity: route?.workload?.identity,
    workload: route?.workload?.name,
    namespace: route?.workload?.namespace,
    address: c.destination.address,
    port: c.destination.port,
  };
}

export function filterContext(c: ConnInfo, route: Route | undefined, requestId: string, attempt: number): Context {
  return {
    direction: c.direction,
    source: sourcePeer(c),
    destination: destinationPeer(c, route),
    service: route?.service,
    route: route?.name,
    requestId,
    attempt,
  };
}

export function peerRecord(p: Peer): PeerRecord {
  const r: PeerRecord = { address: p.address, port: p.port };
  if (p.workload) r.workload = p.workload;
  if (p.namespace) r.namespace = p.namespace;
  if (p.identity) r.identity = p.identity;
  return r;
}
