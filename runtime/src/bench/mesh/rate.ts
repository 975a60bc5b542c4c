/**
 * A fixed-rate HTTP load generator, run as its own process by the mesh benchmark:
 * `node rate.js <url> <rate per s> <seconds>` prints one JSON line
 * `{ generator, sent, ok, errors, p50ms, p90ms, p99ms, lateP99ms? }`.
 *
 * Where `@ambit/native` is built, the generator is its `fixedRateLoad` (16 keep-alive
 * connections, one OS thread each, blocking sockets): each latency runs from the send to the
 * response's last byte, and how late sends were against their due time is reported apart
 * (`lateP99ms`). Otherwise a Node/undici generator stands in, whose latencies count from each
 * request's due time (no coordinated omission) but include its event loop's delays, a floor
 * of about a millisecond. Bounded: stops sending after `seconds`, waits at most 10 s more.
 */
import { Pool } from 'undici';
import { loadNative } from '../../filters/wasmtime/native.js';
import { percentile, summarize } from '../stats.js';

const [url, rateArg, secondsArg] = process.argv.slice(2);
if (!url || !rateArg || !secondsArg) {
  process.stderr.write('usage: rate.js <url> <requests per second> <seconds>\n');
  process.exit(2);
}
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const native = loadNative();
if (native.ok && native.native.fixedRateLoad) {
  const target = new URL(url);
  const r = JSON.parse(native.native.fixedRateLoad(target.hostname, Number(target.port || 80), target.pathname, rate, seconds, 16)) as
    { sent: number; ok: number; errors: number; firstError: string | null; latenciesUs: number[]; lateUs: number[] };
  if (r.firstError) process.stderr.write(`first error: ${r.firstError}\n`);
  const ms = (us: number[]) => Float64Array.from(us, (u) => u / 1000).sort();
  const lat = ms(r.latenciesUs);
  process.stdout.write(`${JSON.stringify({ generator: 'native', sent: r.sent, ok: r.ok, errors: r.errors, p50ms: percentile(lat, 0.5), p90ms: percentile(lat, 0.9), p99ms: percentile(lat, 0.99), lateP99ms: percentile(ms(r.lateUs), 0.99) })}\n`);
  process.exit(0);
}
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
const p90 = percentile(Float64Array.from(latencies).sort(), 0.9);
process.stdout.write(`${JSON.stringify({ generator: 'undici', sent, ok, errors, p50ms: s.p50, p90ms: p90, p99ms: s.p99 })}\n`);
