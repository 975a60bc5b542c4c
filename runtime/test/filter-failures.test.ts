/**
 * A filter that throws, as an operator and a client see it, through `ambit run` on
 * each engine: the proxy logs the exception with the filter's TypeScript line (mapped
 * through the source map the build stored in the component); the client gets the
 * fail-closed 503 without the exception text, unless the binding sets `exposeErrors`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtures, MISBEHAVE_DIR, REPO, throwingFilterMesh } from './fixtures.js';
import { freePort, httpUpstream, type Upstream } from './support/upstreams.js';
import { loadNative } from '@ambit/runtime';

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function get(port: number, p: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The line of the `throw` in the misbehave fixture's source. */
async function throwLine(): Promise<number> {
  const src = (await readFile(path.join(MISBEHAVE_DIR, 'src/filter.ts'), 'utf8')).split('\n');
  return src.findIndex((l) => l.includes("case 'throw': throw new Error")) + 1;
}

for (const engine of ['v8', 'wasmtime'] as const) {
  const native = loadNative();
  const skip = engine === 'wasmtime' && !native.ok ? native.reason : undefined;
  describe.skipIf(skip !== undefined)(`a throwing filter on ${engine}`, () => {
    let upstream: Upstream;
    let child: ChildProcess;
    let out = '';
    let port: number;

    beforeAll(async () => {
      await buildFixtures();
      upstream = await httpUpstream('api');
      const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-failures-'));
      port = await freePort();
      const admin = await freePort();
      const config = path.join(dir, 'mesh.yaml');
      await writeFile(config, `
node: test-node
trustDomain: mesh.test
proxy:
  outbound: { address: 127.0.0.1, port: ${port}, target: "api.test:80" }
  inbound: { address: 127.0.0.1, port: ${await freePort()} }
  admin: { address: 127.0.0.1, port: ${admin} }
  engine: ${engine}
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: 127.0.0.1 }
${throwingFilterMesh(upstream.port)}      - ref: ${MISBEHAVE_DIR}
        name: loud
        exposeErrors: true
        config: { tag: loud, mode: throw, trigger: /loud }
`);
      child = spawn(process.execPath, [path.join(REPO, 'runtime/dist/cli.js'), 'run', '--config', config, '--workers', '1', '--access-log', 'off', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      const readyBy = Date.now() + 60_000;
      for (;;) {
        const r = await get(admin, '/ready').catch(() => undefined);
        if (r?.status === 200) break;
        if (Date.now() > readyBy || child.exitCode !== null) throw new Error(`the node did not become ready: ${out}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    });

    afterAll(async () => {
      child?.kill('SIGTERM');
      await upstream?.close();
    });

    it('answers 503 naming the filter, without the exception text', async () => {
      const r = await get(port, '/quiet/x');
      expect(r.status).toBe(503);
      expect(r.headers['x-ambit-filter-error']).toBe('quiet; trap');
      expect(r.body).toBe('filter quiet failed (trap)\n');
      expect(r.body).not.toContain('on purpose');
      expect(upstream.seen.length).toBe(0);
    });

    it('logs the exception with the TypeScript source line of the throw', async () => {
      const line = await throwLine();
      await get(port, '/quiet/y');
      const by = Date.now() + 5_000;
      const match = () => out.split('\n').find((l) => l.includes('misbehave quiet throws on purpose'));
      while (!match() && Date.now() < by) await new Promise((r) => setTimeout(r, 50));
      const logged = match();
      expect(logged, out).toBeDefined();
      expect(logged).toContain(`src/filter.ts:${line}:`);
      expect(logged).not.toMatch(/filter\.js:\d+/);
      expect(JSON.parse(logged!)).toMatchObject({ filter: 'quiet', kind: 'trap', policy: 'fail-closed', phase: 'requestHeaders' });
    });

    it('puts the mapped exception in the 503 when the binding sets exposeErrors', async () => {
      const r = await get(port, '/loud/z');
      expect(r.status).toBe(503);
      expect(r.body).toContain('misbehave loud throws on purpose');
      expect(r.body).toContain(`src/filter.ts:${await throwLine()}:`);
    });
  });
}
