/**
 * A fixed-rate HTTP load generator, run as its own process by the mesh benchmark:
 * `node rate.js <url> <rate per s> <seconds>` prints one JSON line
 * `{ sent, ok, errors, p50ms, p90ms, p99ms }`. Each request's latency counts from the
 * moment it was due, not from when it was sent, so a stall is not hidden (no
 * coordinated omission). Bounded: stops sending after `seconds`, waits at most 10 s more.
 */
import { Pool } from 'undici';
import { summarize } from '../stats.js';

const [url, rateArg, secondsArg] = process.argv.slice(2);
if (!url || !rateArg || !secondsArg) {
  process.stderr.write('usage: rate.js <url> <requests per second> <seconds>\n');
  process.exit(2);
}
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const pool = new Pool(new URL(url).origin, { connections: 64, pipelining: 1 });
const path = new URL(url).pathname;
const latencies: number[] = [];
let sent = 0;
let ok = 0;
let errors = 0;
const start = performance.now();
const total = Math.floor(rate * seconds);

const one = async (due: number): Promise<void> => {
  try {
    const res = await pool.request({ method: 'GET', path });
    await res.body.dump();
    if (res.statusCode === 200) ok++;
    else errors++;
  } catch {
    errors++;
  }
  latencies.push(performance.now() - due);
};

const inflight = new Set<Promise<void>>();
await new Promise<void>((resolve) => {
  const tick = (): void => {
    const now = performance.now();
    const dueCount = Math.min(total, Math.floor(((now - start) / 1000) * rate));
    while (sent < dueCount) {
      const due = start + (sent * 1000) / rate;
      sent++;
      const p = one(due);
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    if (sent >= total) resolve();
    else setTimeout(tick, 0.2);
  };
  tick();
});
await Promise.race([Promise.all(inflight), new Promise((r) => setTimeout(r, 10_000))]);
await pool.destroy();
const s = summarize(latencies);
const p90 = Float64Array.from(latencies).sort()[Math.max(0, Math.ceil(0.9 * latencies.length) - 1)] ?? Number.NaN;
process.stdout.write(`${JSON.stringify({ sent, ok, errors, p50ms: s.p50, p90ms: p90, p99ms: s.p99 })}\n`);
