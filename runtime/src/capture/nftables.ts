/**
 * nftables capture, the fallback when eBPF cannot load: one `inet` table of NAT rules, replaced
 * atomically (`nft -f`) whenever the config changes. The proxy reads the original destination
 * with SO_ORIGINAL_DST from conntrack, as it does after eBPF's getsockopt.
 *
 *   output     connects from an enrolled pod's cgroup in the proxy's own network namespace
 *              (`socket cgroupv2`) to a meshed destination → DNAT to the outbound listener;
 *   prerouting connects from an enrolled pod in its own network namespace, arriving over its
 *              link (matched by the pod's address: a packet from another namespace carries no
 *              socket cgroup) → DNAT to the outbound listener.
 *
 * The proxy's own connects never match: they are neither from a pod's cgroup nor forwarded.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { AmbitError } from '../deps.js';
import { cgroupLevel, podCgroupDir } from './cgroups.js';
import { cgroup2Mount } from './mounts.js';
import type { CapturePlan } from './plan.js';

/** `nft` on PATH, else in the sbin folders a service's PATH may lack. */
export function nftBinary(): string | undefined {
  for (const p of ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft']) if (existsSync(p)) return p;
  return undefined;
}

export function nft(args: string[], input?: string): Promise<string> {
  const bin = nftBinary();
  if (!bin) return Promise.reject(new Error('nft is not installed (apt-get install -y nftables)'));
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`nft ${args.join(' ')}: ${(stderr || err.message).trim().split('\n').slice(0, 3).join(' ')}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** An nft set declaration, with its elements when there are any. */
export function nftSet(name: string, type: string, elements: string[]): string {
  return `  set ${name} {\n    type ${type}\n${elements.length ? `    elements = { ${elements.join(', ')} }\n` : ''}  }`;
}

/** The table's ruleset for `plan` (replacing any previous version of the table). */
export function nftRuleset(plan: CapturePlan, table: string, cgroupRoot: string | undefined, cgroupExists: (dir: string) => boolean = existsSync): string {
  const { ip4, ip6, port } = plan.redirect;
  const dests = plan.destinations;
  const notProxy4 = (d: { ip: string; port: number }) => !(d.ip === ip4 && (d.port === 0 || d.port === port));
  const notProxy6 = (d: { ip: string; port: number }) => !(d.ip === ip6 && (d.port === 0 || d.port === port));
  const svc4 = dests.filter((d) => d.family === 4 && d.port !== 0 && notProxy4(d)).map((d) => `${d.ip} . ${d.port}`);
  const wl4 = dests.filter((d) => d.family === 4 && d.port === 0 && notProxy4(d)).map((d) => d.ip);
  const svc6 = dests.filter((d) => d.family === 6 && d.port !== 0 && notProxy6(d)).map((d) => `${d.ip} . ${d.port}`);
  const wl6 = dests.filter((d) => d.family === 6 && d.port === 0 && notProxy6(d)).map((d) => d.ip);
  const pods4 = plan.pods.map((p) => p.address).filter((a) => !a.includes(':'));
  const pods6 = plan.pods.map((p) => p.address).filter((a) => a.includes(':'));

  const to4 = `dnat ip to ${ip4}:${port}`;
  const to6 = ip6 ? `dnat ip6 to [${ip6}]:${port}` : undefined;
  const matches = (prefix: string): string[] => {
    const r = [
      `${prefix}ip daddr . tcp dport @svc4 ${to4}`,
      `${prefix}meta l4proto tcp ip daddr @wl4 ${to4}`,
    ];
    if (to6) r.push(`${prefix}ip6 daddr . tcp dport @svc6 ${to6}`, `${prefix}meta l4proto tcp ip6 daddr @wl6 ${to6}`);
    return r;
  };
  const output: string[] = [];
  if (cgroupRoot) {
    // nft resolves cgroupv2 paths under /sys/fs/cgroup, wherever cgroup2 itself is mounted.
    for (const pod of plan.pods) {
      const dir = podCgroupDir(cgroupRoot, pod, cgroupExists);
      if (!dir) continue; // nft refuses a missing path; the pod is still matched by address
      const rel = path.relative('/sys/fs/cgroup', dir);
      output.push(...matches(`socket cgroupv2 level ${cgroupLevel(cgroupRoot, dir)} ${JSON.stringify(rel)} `));
    }
  }
  const prerouting = [
    ...(pods4.length ? matches('ip saddr @pods4 ').filter((r) => !r.includes('ip6')) : []),
    ...(pods6.length ? matches('ip6 saddr @pods6 ').filter((r) => r.includes('ip6 daddr')) : []),
  ];
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    nftSet('svc4', 'ipv4_addr . inet_service', svc4),
    nftSet('wl4', 'ipv4_addr', wl4),
    nftSet('svc6', 'ipv6_addr . inet_service', svc6),
    nftSet('wl6', 'ipv6_addr', wl6),
    nftSet('pods4', 'ipv4_addr', pods4),
    nftSet('pods6', 'ipv6_addr', pods6),
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...output.map((r) => `    ${r}`),
    '  }',
    '  chain prerouting {',
    '    type nat hook prerouting priority -100; policy accept;',
    ...prerouting.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

export class NftCapture {
  private constructor(readonly table: string) {}

  static async install(plan: CapturePlan): Promise<NftCapture> {
    const capture = new NftCapture(plan.settings.nftTable);
    await capture.apply(plan);
    return capture;
  }

  async apply(plan: CapturePlan): Promise<void> {
    try {
      await nft(['-f', '-'], nftRuleset(plan, this.table, cgroup2Mount()));
    } catch (e) {
      const text = e instanceof Error ? e.message : String(e);
      const hint = /Operation not permitted/.test(text) ? 'needs CAP_NET_ADMIN' : /No such file/.test(text) ? 'a pod cgroup is missing, or the nft_socket/nft_nat modules are unavailable' : '';
      throw new AmbitError('AMBIT_ERR_CAPTURE', `nftables unavailable: ${text}${hint ? `: ${hint}` : ''}`);
    }
  }

  /** The table stays until uninstall, like eBPF's pinned links. */
  close(): void { /* nothing held */ }
}

/** Deletes the capture table; false when there was none. */
export async function uninstallNft(table: string): Promise<boolean> {
  if (!nftBinary()) return false;
  try {
    await nft(['delete', 'table', 'inet', table]);
    return true;
  } catch (e) {
    if (/No such file|does not exist/.test(e instanceof Error ? e.message : '')) return false;
    throw new AmbitError('AMBIT_ERR_CAPTURE', `removing nftables table inet ${table}: ${e instanceof Error ? e.message : String(e)}`);
  }
}
