/**
 * h2spec (github.com/summerwind/h2spec, built by runtime/test/h2spec/build.sh into a cache
 * outside the clone) against the native data path as an h2c proxy (HTTP/2 with prior
 * knowledge), in front of real upstreams:
 * - a `protocol: http2` port (an h2c upstream): every case passes;
 * - a `protocol: http` port (an HTTP/1.1 upstream, the way nginx is measured as an h2c proxy):
 *   every case but one passes. The exception, 3.5/2 (an invalid connection preface), is a
 *   malformed HTTP/1.1 request line on a port that serves HTTP/1.1, so it gets HTTP/1.1's `400`
 *   instead of a closed connection; `protocol: http2` ports close it (src/proxy/sniff.rs).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativePathSkip, startNativePath, type RunningNativePath } from './support/native-path.js';
import { h2Upstream, httpUpstream, type Upstream } from './support/upstreams.js';

const BUILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'h2spec/build.sh');
/** The suite's case count in this h2spec version (v2.2.1, without `--strict`). */
const CASES = 145;

/** The h2spec binary: AMBIT_H2SPEC, or what build.sh built (it builds on first use). */
function h2spec(): string {
  const given = process.env['AMBIT_H2SPEC'];
  if (given) {
    if (!existsSync(given)) throw new Error(`AMBIT_H2SPEC=${given} does not exist`);
    return given;
  }
  return execFileSync(BUILD, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 }).trim();
}

/** Writes raw bytes and reads until the peer closes (at most 3 s); answers what was read. */
function raw(port: number, bytes: string): Promise<{ text: string; closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let text = '';
    const t = setTimeout(() => { s.destroy(); resolve({ text, closedByPeer: false }); }, 3_000);
    s.on('data', (d: Buffer) => { text += d.toString('latin1'); });
    s.on('close', () => { clearTimeout(t); resolve({ text, closedByPeer: true }); });
    s.on('error', () => {});
  });
}

interface H2specRun { total: number; passed: number; failed: number; failedCases: string[]; out: string }

function runH2spec(bin: string, port: number): Promise<H2specRun> {
  return new Promise((resolve) => {
    // Exit status is non-zero when a case fails: the summary in the output says which.
    execFile(bin, ['-h', '127.0.0.1', '-p', String(port), '-o', '3'], { timeout: 600_000, maxBuffer: 8 << 20 }, (_e, stdout, stderr) => {
      const out = `${stdout}${stderr}`;
      const summary = out.match(/(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed/);
      const failures = out.includes('Failures:') ? out.slice(out.indexOf('Failures:')) : '';
      // Each failed case as "<section>/<number>", e.g. "3.5/2".
      const failedCases: string[] = [];
      let section = '';
      for (const line of failures.split('\n')) {
        const sec = line.match(/^\s+(\d+(?:\.\d+)+)\.\s/);
        if (sec) section = sec[1]!;
        const c = line.match(/^\s+× (\d+):/);
        if (c) failedCases.push(`${section}/${c[1]}`);
      }
      resolve({ total: Number(summary?.[1] ?? 0), passed: Number(summary?.[2] ?? 0), failed: Number(summary?.[4] ?? -1), failedCases, out });
    });
  });
}

describe.skipIf(nativePathSkip)('h2spec against the native data path (h2c)', () => {
  let h1: Upstream;
  let h2: Upstream;
  let proxy: RunningNativePath;
  let bin: string;

  beforeAll(async () => {
    bin = h2spec();
    h1 = await httpUpstream('api');
    h2 = await h2Upstream('grpcish');
    proxy = await startNativePath(`
node: test-node
trustDomain: mesh.test
proxy: { engine: wasmtime, dataPath: native }
services:
  - name: api
    namespace: test
    vip: 10.96.20.1
    ports: [{ port: 80, targetPort: ${h1.port}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
  - name: h2c
    namespace: test
    vip: 10.96.20.2
    ports: [{ port: 80, targetPort: ${h2.port}, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1 }]
`, [{ name: 'http', target: { address: '10.96.20.1', port: 80 } }, { name: 'http2', target: { address: '10.96.20.2', port: 80 } }]);
  }, 900_000);

  afterAll(async () => {
    await proxy?.close();
    await h1?.close();
    await h2?.close();
  });

  it(`passes all ${CASES} cases on a protocol: http2 port`, async () => {
    const run = await runH2spec(bin, proxy.ports['http2']!);
    expect(run.total, run.out.slice(-4000)).toBe(CASES);
    expect(run.failedCases, run.out.slice(-4000)).toEqual([]);
    expect(run.passed).toBe(CASES);
    // Served for real: the h2c upstream saw h2spec's requests.
    expect(h2.seen.length).toBeGreaterThan(0);
  }, 600_000);

  it('serves HTTP/1.1 on a protocol: http2 port for a well-formed request line, and closes what is neither', async () => {
    const h1 = await raw(proxy.ports['http2']!, 'GET /h1-on-h2 HTTP/1.1\r\nhost: h2c.test\r\nconnection: close\r\n\r\n');
    expect(h1.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(h2.seen.some((s) => s.path === '/h1-on-h2')).toBe(true);
    const bad = await raw(proxy.ports['http2']!, 'INVALID CONNECTION PREFACE\r\n\r\n');
    expect(bad.closedByPeer).toBe(true);
    expect(bad.text).not.toContain('HTTP/1.1');
    // The same bytes on a protocol: http port are a malformed HTTP/1.1 request.
    const onHttp = await raw(proxy.ports['http']!, 'INVALID CONNECTION PREFACE\r\n\r\n');
    expect(onHttp.text).toMatch(/^HTTP\/1\.1 400 /);
  }, 30_000);

  it(`passes ${CASES - 1} of ${CASES} on a protocol: http port, answering the invalid preface as HTTP/1.1`, async () => {
    const run = await runH2spec(bin, proxy.ports['http']!);
    expect(run.total, run.out.slice(-4000)).toBe(CASES);
    expect(run.failedCases, run.out.slice(-4000)).toEqual(['3.5/2']);
    expect(run.out).toMatch(/frame header looked like an HTTP\/1\.1 header/);
    expect(run.passed).toBe(CASES - 1);
    expect(h1.seen.length).toBeGreaterThan(0);
  }, 600_000);
});
