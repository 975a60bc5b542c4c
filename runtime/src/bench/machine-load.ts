/**
 * How much CPU other processes used while the bench ran: the machine's busy time
 * (Linux /proc/stat) minus this process's own CPU time. Other load inflates every
 * number, so the report says how much there was.
 */
import { readFileSync } from 'node:fs';

interface CpuSnapshot {
  at: number;
  /** Machine-wide busy milliseconds (all cores), or NaN where /proc/stat is missing. */
  busyMs: number;
  /** This process's CPU milliseconds (all its threads). */
  ownMs: number;
}

/** /proc/stat counts in USER_HZ, 100 per second on Linux. */
const TICK_MS = 10;

function machineBusyMs(): number {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice)
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
    return (user + nice + system + irq + softirq + steal) * TICK_MS;
  } catch {
    return Number.NaN;
  }
}

export function cpuSnapshot(): CpuSnapshot {
  const own = process.cpuUsage();
  return { at: performance.now(), busyMs: machineBusyMs(), ownMs: (own.user + own.system) / 1000 };
}

/** Average number of cores other processes kept busy between two snapshots (NaN if unknown). */
export function otherCores(a: CpuSnapshot, b: CpuSnapshot): number {
  const wall = b.at - a.at;
  if (!(wall > 0)) return Number.NaN;
  return Math.max(0, (b.busyMs - a.busyMs - (b.ownMs - a.ownMs)) / wall);
}

/** Samples other processes' CPU use for `ms` while this process idles. */
export async function sampleOtherCores(ms: number): Promise<number> {
  const a = cpuSnapshot();
  await new Promise((r) => setTimeout(r, ms));
  return otherCores(a, cpuSnapshot());
}
