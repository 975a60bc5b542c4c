/** Services → mesh services (VIP, ports with their protocol, selector, subsets from HTTPRoutes). */
import type { V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { Protocol, ServiceConfig, SubsetConfig } from '@ambit/runtime';
import { isDnsLabel } from './labels.js';

/**
 * A port's protocol the way Istio reads it: `appProtocol` (`http`, `http2`, `grpc`,
 * `kubernetes.io/h2c`, `tcp`), else the port name's prefix (`http-…`, `grpc-…`, `tcp-…`),
 * else detected from the first bytes (`auto`).
 */
export function portProtocol(p: V1ServicePort): Protocol {
  const app = p.appProtocol?.toLowerCase();
  const from = (s: string): Protocol | undefined => {
    if (s === 'http' || s === 'http1') return 'http';
    if (s === 'http2' || s === 'grpc' || s === 'grpc-web' || s === 'kubernetes.io/h2c') return 'http2';
    if (s === 'tcp' || s === 'tls' || s === 'mongo' || s === 'mysql' || s === 'redis') return 'tcp';
    return undefined;
  };
  if (app) return from(app) ?? 'auto';
  const prefix = p.name?.toLowerCase().split('-')[0];
  return (prefix && from(prefix)) || 'auto';
}

/**
 * A port's targetPort: a number, or a container port name each endpoint pod resolves
 * (workloads' `namedPorts`), as kube-proxy does; absent, the service port.
 */
export function targetPortOf(p: V1ServicePort): number | string {
  const t = p.targetPort as number | string | undefined;
  if (typeof t === 'number') return t;
  if (typeof t === 'string' && t !== '') return /^\d+$/.test(t) ? Number(t) : t;
  return p.port;
}

export function serviceOf(svc: V1Service, subsets: readonly SubsetConfig[] = []): ServiceConfig | undefined {
  const name = svc.metadata?.name;
  const namespace = svc.metadata?.namespace;
  if (!isDnsLabel(name) || !isDnsLabel(namespace) || svc.spec?.type === 'ExternalName') return undefined;
  const ports = (svc.spec?.ports ?? []).filter((p) => p.protocol === undefined || p.protocol === 'TCP');
  if (ports.length === 0) return undefined;
  const vip = svc.spec?.clusterIP && svc.spec.clusterIP !== 'None' ? svc.spec.clusterIP : undefined;
  const s = {
    name,
    namespace,
    ...(vip ? { vip } : {}),
    ports: ports.map((p) => ({
      port: p.port,
      targetPort: targetPortOf(p),
      protocol: portProtocol(p),
      ...(p.name ? { name: p.name } : {}),
    })),
    ...(svc.spec?.selector && Object.keys(svc.spec.selector).length > 0 ? { selector: { ...svc.spec.selector } } : {}),
    ...(subsets.length > 0 ? { subsets: [...subsets] } : {}),
  };
  return s as ServiceConfig;
}
