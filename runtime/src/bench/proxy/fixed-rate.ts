/**
 * Latency at a fixed request rate, the way a service sees it under normal load rather than
 * at saturation: h2load over HTTP/1.1, 10 keep-alive connections each sending 100 requests
 * per second (1,000 req/s), for a bounded duration. Each request's time comes from h2load's
 * log file (start, status, duration in µs per line), so p50 and p99 are exact.
 */
import { execFileSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const FIXED_RATE = 1_000;
const CLIENTS = 10;

export interface RateResult {
  name: string;
  rate: number;
  requests: number;
  p50ms: number;
  p99ms: number;
  /** Requests that failed or answered other than 2xx. */
  errors: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function fixedRate(name: string, port: number, seconds: number, dir: string, host = '127.0.0.1'): Promise<RateResult> {
  const log = path.join(dir, `rate-${name.replace(/\W+/g, '-')}.log`);
  const args = ['--h1', `-c${CLIENTS}`, '-t1', `--rps=${FIXED_RATE / CLIENTS}`, '-D', String(seconds), `--log-file=${log}`, `http://${host}:${port}/`];
  const canPin = os.availableParallelism() > 1;
  execFileSync(canPin ? 'taskset' : 'h2load', canPin ? ['-c', '1', 'h2load', ...args] : args, { encoding: 'utf8', timeout: (seconds + 30) * 1000 });
  const lines = (await readFile(log, 'utf8')).trim().split('\n').filter(Boolean);
  await rm(log, { force: true });
  const times: number[] = [];
  let errors = 0;
  for (const line of lines) {
    const [, status, us] = line.split('\t');
    const code = Number(status);
    if (!(code >= 200 && code < 300)) errors++;
    times.push(Number(us) / 1000);
  }
  times.sort((a, b) => a - b);
  return { name, rate: FIXED_RATE, requests: times.length, p50ms: quantile(times, 0.5), p99ms: quantile(times, 0.99), errors };
}
