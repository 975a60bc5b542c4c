/** What the network-namespace tests share: finding `ip`/`nft`, and whether a netns can be made here. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** `name` as found on PATH, else in the sbin folders a non-login root shell may lack on its PATH. */
export function findTool(name: string): string | undefined {
  for (const candidate of [name, `/usr/sbin/${name}`, `/sbin/${name}`]) {
    if (!spawnSync(candidate, ['--version']).error) return candidate;
  }
  return undefined;
}

export const IP = findTool('ip') ?? 'ip';
export const NFT = findTool('nft') ?? 'nft';

/** Why a netns + nftables test cannot run here, or undefined when it can. Leaves nothing behind. */
export function netnsSkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux network namespaces and nftables';
  if (process.getuid?.() !== 0) return 'needs root to create a network namespace and nft rules';
  if (!findTool('ip') || !findTool('nft')) return '`ip` and/or `nft` is not installed: apt-get install -y nftables iproute2';
  const probe = `ambit-probe-${process.pid}-${randomBytes(3).toString('hex')}`;
  const add = spawnSync(IP, ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.status !== 0) return `cannot create a network namespace: ${add.stderr.trim() || `exit ${add.status}`}`;
  spawnSync(IP, ['netns', 'del', probe]);
  return undefined;
}
