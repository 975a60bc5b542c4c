/**
 * Traffic to a destination the mesh does not know goes where the client sent it,
 * untouched (Istio's PassthroughCluster).
 */
import { Balancer } from '../upstream/balancer.js';
import { DEFAULT_OUTLIER, Endpoint } from '../upstream/endpoint.js';
import type { ConnInfo } from './context.js';
import type { Route } from './state.js';

const balancer = new Balancer('round-robin');

export function passthroughRoute(conn: ConnInfo): Route {
  return {
    name: 'passthrough',
    endpoints: [new Endpoint(conn.destination.address, conn.destination.port)],
    balancer,
    outlier: DEFAULT_OUTLIER,
    protocol: 'auto',
    connectTimeoutMs: 5_000,
    requestTimeoutMs: 0,
    l7: false,
    connectionPhase: false,
  };
}
