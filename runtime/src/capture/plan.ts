/**
 * What capture must do for a mesh config, whatever the mechanism: which pods to enroll (local
 * workloads with a cgroup), where their connects go (the outbound listener as they reach it),
 * and which destinations are meshed (service VIP:ports, workload addresses).
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { CaptureConfig, MeshConfig } from '../config/schema.js';
import { canonicalIp } from '../mesh/address.js';
import { DEST_LOCAL, DEST_MESHED } from './layout.js';

export interface EnrolledPod {
  /** `name.namespace` */
  key: string;
  address: string;
  /** As configured: relative to the cgroup2 mount, or absolute. */
  cgroup?: string;
  /** Kubernetes pod UID, when the cgroup is to be found from it. */
  podUid?: string;
}

export interface MeshedDestination {
  family: 4 | 6;
  ip: string;
  /** 0: any port (a workload address). */
  port: number;
  /** DEST_MESHED, | DEST_LOCAL for a workload of this node. */
  flags: number;
}

export interface CapturePlan {
  settings: CaptureConfig;
  pods: EnrolledPod[];
  /** The outbound listener as enrolled pods reach it. */
  redirect: { ip4: string | undefined; ip6: string | undefined; port: number };
  destinations: MeshedDestination[];
}

function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

export function capturePlan(config: MeshConfig): CapturePlan {
  const settings = config.capture;
  const out = config.proxy.outbound;
  const listen = canonicalIp(out.address) ?? out.address;
  const ip4 = settings.redirectAddress ?? (isIPv4(listen) && !isWildcard(listen) ? listen : '127.0.0.1');
  const ip6 = settings.redirectAddress6 ?? (isIPv6(listen) && !isWildcard(listen) ? listen : undefined);
  const local = config.workloads.filter((w) => (w.node ?? config.node) === config.node);

  const pods = local
    .filter((w) => w.cgroup !== undefined || w.podUid !== undefined)
    .map((w): EnrolledPod => ({
      key: `${w.name}.${w.namespace}`,
      address: canonicalIp(w.address) ?? w.address,
      ...(w.cgroup !== undefined ? { cgroup: w.cgroup } : { podUid: w.podUid }),
    }));

  const seen = new Map<string, MeshedDestination>();
  const add = (ip: string, port: number, flags: number) => {
    const c = canonicalIp(ip) ?? ip;
    const family = isIPv4(c) ? 4 : isIPv6(c) ? 6 : undefined;
    if (!family) return;
    const k = `${c}|${port}`;
    const prev = seen.get(k);
    if (prev) prev.flags |= flags;
    else seen.set(k, { family, ip: c, port, flags });
  };
  for (const s of config.services) {
    if (!s.vip) continue;
    for (const p of s.ports) add(s.vip, p.port, DEST_MESHED);
  }
  const localKeys = new Set(local.map((w) => `${w.name}.${w.namespace}`));
  for (const w of config.workloads) {
    add(w.address, 0, DEST_MESHED | (localKeys.has(`${w.name}.${w.namespace}`) ? DEST_LOCAL : 0));
  }
  return { settings, pods, redirect: { ip4, ip6, port: out.port }, destinations: [...seen.values()] };
}
