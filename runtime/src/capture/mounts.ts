/**
 * Where cgroup2 and bpffs are mounted, read from `/proc/mounts` (never assumed: hybrid hosts
 * keep cgroup2 at `/sys/fs/cgroup/unified`), and mounting bpffs when it is missing.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import * as bpf from '@ambit/addon/bpf';
import { AmbitError } from '../deps.js';

export interface Mount { device: string; path: string; type: string }

/** `/proc/mounts`-format text → mounts (octal escapes such as `\040` decoded). */
export function parseMounts(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text.split('\n').filter(Boolean).map((line) => {
    const [device = '', path = '', type = ''] = line.split(' ');
    return { device: unescape(device), path: unescape(path), type };
  });
}

function mounts(): Mount[] {
  return parseMounts(readFileSync('/proc/mounts', 'utf8'));
}

/** The cgroup2 mount point, or undefined when cgroup2 is not mounted. */
export function cgroup2Mount(): string | undefined {
  return mounts().find((m) => m.type === 'cgroup2')?.path;
}

/** The first bpffs mount point, or undefined. */
export function bpffsMount(): string | undefined {
  return mounts().find((m) => m.type === 'bpf')?.path;
}

/** The bpffs mount point, mounting one at /sys/fs/bpf first when there is none. */
export function ensureBpffs(): string {
  const found = bpffsMount();
  if (found) return found;
  const at = '/sys/fs/bpf';
  try {
    if (!existsSync(at)) mkdirSync(at, { recursive: true });
    bpf.mountBpffs(at);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CAPTURE', `bpffs is not mounted and mounting it at ${at} failed (${e instanceof Error ? e.message : String(e)}): mount it with \`mount -t bpf bpf ${at}\` (needs CAP_SYS_ADMIN)`);
  }
  return at;
}
