/**
 * Shared storage (capability `shared`) is the node's, not a worker's: the table of a binding
 * is a file in the node's shared directory, mapped by every proxy process.
 *
 * - Two processes adding to one table through the addon lose no update.
 * - `ambit run --workers 2` on each engine, with a rate limit of 10 tokens: connections are
 *   spread over both workers (checked with `ss`, which names the process holding each
 *   accepted socket), and exactly 10 requests reach the upstream; the others get 429.
 * - The primary made the shared directory and removes it when it stops.
 * - Without the shared-table addon, the V8 engine keeps a table per process and says so.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { openSharedTable } from '@ambit/addon/shared';
import { buildBuiltinFilters, builtinDir, REPO } from './fixtures.js';
import { ctx, request } from './conformance.js';
import { freePort } from './support/upstreams.js';

const CLI = path.join(REPO, 'runtime/dist/cli.js');

describe('shared storage is one table per node, across processes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-shared-workers-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('two processes adding to one table lose no update', async () => {
    const script = `
      const { openSharedTable } = await import(${JSON.stringify(path.join(REPO, 'runtime/addon/dist/shared.js'))});
      const t = openSharedTable(process.argv[1], 'adders/ratelimit');
      for (let i = 0; i < 20000; i++) t.add('hits', 1);
    `;
    const run = () => new Promise<number | null>((resolve) => {
      spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: 'inherit' }).once('exit', resolve);
    });
    expect(await Promise.all([run(), run()])).toEqual([0, 0]);
    expect(openSharedTable(dir, 'adders/ratelimit').get('hits')?.value).toBe('40000');
    // Another scope is another file.
    expect(openSharedTable(dir, 'other/ratelimit').get('hits')).toBeUndefined();
  });

  it('a file that is not a table is refused with its path and what to do', async () => {
    // Each step in a child process: this one must not map a file that is then overwritten.
    const open = () => execFileSync(process.execPath, ['--input-type=module', '-e', `
      const { openSharedTable } = await import(${JSON.stringify(path.join(REPO, 'runtime/addon/dist/shared.js'))});
      try { console.log('opened ' + openSharedTable(process.argv[1], 'probe/x').path); } catch (e) { console.log(e.code + ': ' + e.message); }
    `, dir], { encoding: 'utf8' }).trim();
    const file = open().replace(/^opened /, '');
    expect(existsSync(file)).toBe(true);
    await writeFile(file, 'not a table');
    const refused = open();
    expect(refused).toMatch(/^AMBIT_ERR_SHARED_TABLE: /);
    expect(refused).toContain(file);
    expect(refused).toContain('remove it');
  });
});

describe('without the shared-table addon', () => {
  it('the V8 engine keeps a table per process, and says so once', async () => {
    await buildBuiltinFilters();
    vi.stubEnv('AMBIT_DISABLE_ADDON', '1');
    vi.resetModules();
    const said: string[] = [];
    try {
      const { V8Engine, bindingFromArtifact } = await import('@ambit/runtime');
      const { loadFilterArtifact } = await import('@ambit/filter-sdk/host');
      const engine = new V8Engine({ workers: 2, say: (line) => said.push(line), onLog: () => {} });
      try {
        const artifact = await loadFilterArtifact(builtinDir('ratelimit'));
        const limit = (name: string) => bindingFromArtifact(artifact, { name, deadlineMs: 5000, config: { maxTokens: 3, tokensPerFill: 3, fillIntervalMs: 3_600_000 } });
        const chain = await engine.createChain([limit('a/ratelimit'), limit('b/ratelimit')]);
        const outs = await Promise.all(Array.from({ length: 6 }, () => chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request() })));
        // Still one table for all of the engine's threads.
        expect(outs.filter((o) => o.action === 'continue')).toHaveLength(3);
        expect(said.filter((l) => l.startsWith('shared storage is per process'))).toHaveLength(1);
        expect(said[0]).toContain('AMBIT_DISABLE_ADDON=1');
        expect(engine.info()['sharedTables']).toEqual({ 'a/ratelimit': 'in this process only', 'b/ratelimit': 'in this process only' });
        await chain.close();
      } finally {
        await engine.close();
      }
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});

/** The pids holding accepted sockets on `port` (from `ss`), one entry per socket. */
function acceptedBy(port: number): number[] {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

/** Children of `pid` (its workers). */
function childrenOf(pid: number): number[] {
  const tasks = execFileSync('sh', ['-c', `cat /proc/${pid}/task/*/children`], { encoding: 'utf8' });
  return tasks.split(/\s+/).filter(Boolean).map(Number);
}

/** Opens `n` connections and waits (bounded) until a proxy process has accepted each. */
async function connectAll(port: number, n: number): Promise<net.Socket[]> {
  const sockets = await Promise.all(Array.from({ length: n }, () => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  })));
  for (let i = 0; i < 100 && acceptedBy(port).length < n; i++) await new Promise((r) => setTimeout(r, 50));
  return sockets;
}

/** One HTTP/1.1 request on an open socket; resolves with the status code. */
function statusOf(socket: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      if (m) {
        resolve(Number(m[1]));
        socket.destroy();
      }
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`connection closed before a status line: ${JSON.stringify(head)}`)));
    socket.write('GET /limited HTTP/1.1\r\nhost: api.test\r\nconnection: close\r\n\r\n');
  });
}

describe.each(['v8', 'wasmtime'] as const)('a rate limit with two proxy workers (engine: %s)', (engine) => {
  let dir: string;
  let upstream: http.Server;
  let hits = 0;
  beforeAll(async () => {
    await buildBuiltinFilters();
    dir = await mkdtemp(path.join(os.tmpdir(), `ambit-workers-${engine}-`));
    upstream = http.createServer((_req, res) => { hits++; res.end('ok'); });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  });
  afterAll(async () => {
    await new Promise<void>((r) => upstream.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('admits exactly maxTokens requests across both workers; the shared directory goes with the primary', async () => {
    const ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort() };
    const upstreamPort = (upstream.address() as net.AddressInfo).port;
    const config = path.join(dir, 'mesh.yaml');
    await writeFile(config, `node: n1
proxy:
  outbound: { address: 127.0.0.1, port: ${ports.outbound}, target: "api.test:80" }
  inbound: { address: 127.0.0.1, port: ${ports.inbound} }
  admin: { address: 127.0.0.1, port: ${ports.admin} }
  engine: ${engine}
  workers: 2
services:
  - name: api
    namespace: test
    ports: [{ port: 80, targetPort: ${upstreamPort}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: limit
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${builtinDir('ratelimit')}
        deadlineMs: 5000
        config: { maxTokens: 10, tokensPerFill: 10, fillIntervalMs: 3600000 }
`);
    const child = spawn(process.execPath, [CLI, 'run', '--config', config, '--access-log', 'off'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      // Ready once both workers have loaded their filters.
      let ready = false;
      for (let i = 0; i < 600 && !ready && child.exitCode === null; i++) {
        ready = (await fetch(`http://127.0.0.1:${ports.admin}/ready`).catch(() => undefined))?.ok ?? false;
        if (!ready) await new Promise((r) => setTimeout(r, 100));
      }
      expect(ready, output).toBe(true);
      const dump = (await (await fetch(`http://127.0.0.1:${ports.admin}/config_dump`)).json()) as { sharedDir: string };
      expect(existsSync(dump.sharedDir)).toBe(true);
      const workers = childrenOf(child.pid!);
      expect(workers).toHaveLength(2);

      // Hold connections open until both workers have accepted some (the kernel picks which).
      const sockets: net.Socket[] = [];
      for (let round = 0; round < 5; round++) {
        sockets.push(...(await connectAll(ports.outbound, 15)));
        if (new Set(acceptedBy(ports.outbound)).size === 2) break;
      }
      const holders = acceptedBy(ports.outbound);
      expect(holders).toHaveLength(sockets.length);
      expect(new Set(holders)).toEqual(new Set(workers));

      const statuses = await Promise.all(sockets.map(statusOf));
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(sockets.length - 10);
      expect(hits).toBe(10);
      // The bucket is in the node's table: one file for the binding's filter.
      expect(readdirSync(dump.sharedDir)).toHaveLength(1);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(dump.sharedDir)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    }
  });
});
