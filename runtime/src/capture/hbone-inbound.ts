/**
 * Inbound HBONE capture. Other nodes dial `<workload ip>:<hbonePort>` (15008), as ztunnel does;
 * on a node whose pods have network namespaces of their own, those connections would be routed
 * on to the pod. One nftables table, `inet <capture.nftTable>_hbone`, DNATs them in prerouting
 * to this node's HBONE listener (`proxy.hbone`). conntrack keeps the address that was dialed,
 * which the listener reads with SO_ORIGINAL_DST to present that workload's certificate.
 *
 *   prerouting  ip daddr @workloads4 tcp dport <hbonePort> → DNAT to the HBONE listener
 *               (and the same for IPv6 workloads)
 *
 * It is installed beside either outbound mechanism (eBPF's cgroup hooks see only the pods' own
 * connects, not traffic forwarded to them), when the config sets `identity` and capture is on
 * for this node (a workload enrolled, mode not none), and replaced atomically on reload.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { MeshConfig } from '../config/schema.js';
import { AmbitError } from '../deps.js';
import { canonicalIp } from '../mesh/address.js';
import { nft, nftSet } from './nftables.js';

export interface HboneInboundPlan {
  table: string;
  /** The port other nodes dial at this node's workloads' addresses (its `nodes` entry's hbonePort). */
  port: number;
  /** Where the HBONE listener listens; a wildcard address means "this host". */
  listener: { address: string; port: number };
  workloads4: string[];
  workloads6: string[];
}

/** Undefined when the config sets no identity (no HBONE listener) or this node has no workloads. */
export function hboneInboundPlan(config: MeshConfig): HboneInboundPlan | undefined {
  if (!config.identity) return undefined;
  const addresses = config.workloads
    .filter((w) => (w.node ?? config.node) === config.node)
    .map((w) => canonicalIp(w.address) ?? w.address);
  if (addresses.length === 0) return undefined;
  const self = config.nodes.find((n) => n.name === config.node);
  return {
    table: `${config.capture.nftTable}_hbone`,
    port: self?.hbonePort ?? config.proxy.hbone.port,
    listener: { address: canonicalIp(config.proxy.hbone.address) ?? config.proxy.hbone.address, port: config.proxy.hbone.port },
    workloads4: [...new Set(addresses.filter((a) => isIPv4(a)))].sort(),
    workloads6: [...new Set(addresses.filter((a) => isIPv6(a)))].sort(),
  };
}

export function hboneInboundRuleset(plan: HboneInboundPlan): string {
  const { address, port } = plan.listener;
  const wildcard = address === '0.0.0.0' || address === '::';
  // `redirect` sends to the address of the interface the packet came in on (any address the
  // listener takes when bound to a wildcard); otherwise DNAT to the listener's own address.
  const to4 = wildcard || isIPv6(address) ? `redirect to :${port}` : `dnat ip to ${address}:${port}`;
  const to6 = wildcard || isIPv4(address) ? `redirect to :${port}` : `dnat ip6 to [${address}]:${port}`;
  return [
    `table inet ${plan.table}`,
    `delete table inet ${plan.table}`,
    `table inet ${plan.table} {`,
    nftSet('workloads4', 'ipv4_addr', plan.workloads4),
    nftSet('workloads6', 'ipv6_addr', plan.workloads6),
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    `    ip daddr @workloads4 tcp dport ${plan.port} ${to4}`,
    `    ip6 daddr @workloads6 tcp dport ${plan.port} ${to6}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Installs (or replaces) the table; a coded error saying what is missing when it cannot. */
export async function applyHboneInbound(plan: HboneInboundPlan): Promise<void> {
  try {
    await nft(['-f', '-'], hboneInboundRuleset(plan));
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    const hint = /Operation not permitted/.test(text) ? ': needs CAP_NET_ADMIN' : /No such file/.test(text) ? ': the nft_nat module is unavailable' : '';
    throw new AmbitError('AMBIT_ERR_CAPTURE', `inbound HBONE redirect unavailable: ${text}${hint}`);
  }
}
