// End to end: `ambit run` routes by the original destination it reads with SO_ORIGINAL_DST
// when nftables captures the traffic. Everything runs inside a network namespace of our own,
// which the suite creates and deletes (with what is in it: routes, nft table, processes):
//
//   client ──▶ 10.96.7.1:80 / 10.96.7.2:80 (local route on lo, src 127.0.0.1)
//            nft output hook: ip daddr 10.96.7.0/24 tcp dport 80 redirect to :15001
//          ──▶ proxy outbound 127.0.0.1:15001 (no `target`): SO_ORIGINAL_DST → VIP → service
//          ──▶ alpha 127.0.0.1:18181 (no filter: L4 splice) | beta 127.0.0.1:18182 (hello filter: L7)
//
// The proxy's own upstream connections go to 127.0.0.1:1818x, which the rule does not match.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as addon from '@ambit/addon';
import { HELLO_DIR, REPO } from './fixtures.js';
import { IP, NFT, netnsSkipReason } from './support/netns.js';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const UPSTREAMS_JS = path.join(here, 'support/netns/upstreams.mjs');
const CLIENT_JS = path.join(here, 'support/netns/client.mjs');
const CLI_JS = path.join(REPO, 'runtime/dist/cli.js');

/** Why this suite cannot run here, or undefined when it can. */
function skipReason(): string | undefined {
  const netns = netnsSkipReason();
  if (netns) return netns;
  if (!addon.available) return `the native addon that reads SO_ORIGINAL_DST is unavailable: ${addon.unavailableReason ?? 'unknown reason'}`;
  return undefined;
}

const skip = skipReason();

const ALPHA = { vip: '10.96.7.1', port: 18181 };
const BETA = { vip: '10.96.7.2', port: 18182 };
const OUTBOUND = 15001;
const ADMIN = 15000;

function meshYaml(filterRef: string): string {
  return `
node: capture-node
trustDomain: mesh.test
proxy:
  # No target: a connection without an original destination is closed, so every request
  # that gets through was routed by SO_ORIGINAL_DST.
  outbound: { address: 127.0.0.1, port: ${OUTBOUND} }
  inbound: { address: 127.0.0.1, port: 15006 }
  admin: { address: 127.0.0.1, port: ${ADMIN} }
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: 127.0.0.1 }
services:
  - name: alpha
    namespace: test
    vip: ${ALPHA.vip}
    ports: [{ port: 80, targetPort: ${ALPHA.port}, protocol: auto, name: http }]  # auto and no HTTP filter: spliced at L4
    endpoints: [{ address: 127.0.0.1 }]
  - name: beta
    namespace: test
    vip: ${BETA.vip}
    ports: [{ port: 80, targetPort: ${BETA.port}, protocol: http, name: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: hello-beta
    target: { service: beta.test }
    direction: outbound
    filters:
      - ref: ${JSON.stringify(filterRef)}
        failurePolicy: fail-closed
        config:
          header: x-ambit-hello
          denyPathPrefixes: [/admin]
`;
}

interface SocketInfo { remoteAddress?: string; remotePort?: number; localAddress?: string; localPort?: number }
interface Result {
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
  body?: unknown;
  error?: string;
  socket?: SocketInfo;
}
interface Echo { upstream: string; method: string; path: string; headers: Record<string, string>; peer: string }
type AccessLine = Record<string, unknown> & { log: string; type: 'request' | 'connection' };

describe.skipIf(skip !== undefined)(
  `ambit run behind an nftables redirect: routes by SO_ORIGINAL_DST${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const ns = `ambit-cap-${process.pid}-${randomBytes(3).toString('hex')}`;
    let created = false;
    let dir = '';
    let accessLogFile = '';
    const children: Array<{ name: string; child: ChildProcess; output: () => string }> = [];
    let results: Result[] = [];

    const ip = (...args: string[]) => execFileP(IP, args, { timeout: 10_000 });

    /** Runs `cmd` inside the namespace with `input` on stdin. */
    const inNs = (cmd: string, args: string[], input = '') =>
      new Promise<string>((resolve, reject) => {
        const child = execFile(IP, ['netns', 'exec', ns, cmd, ...args], { timeout: 15_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${cmd} ${args.join(' ')} in ${ns}: ${err.message}\n${stderr}`)) : resolve(stdout),
        );
        child.stdin?.end(input);
      });

    /** Starts a long-running process inside the namespace; its output is kept for error messages. */
    function startInNs(name: string, args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string } {
      const child = spawn(IP, ['netns', 'exec', ns, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => { out = (out + d).slice(-20_000); });
      child.stderr?.setEncoding('utf8').on('data', (d: string) => { out = (out + d).slice(-20_000); });
      const entry = { name, child, output: () => out };
      children.push(entry);
      return entry;
    }

    /** The client script in the namespace: optionally waits for `waitReady`, then makes the requests. */
    async function client(requests: Array<{ url: string }>, waitReady?: string): Promise<Result[]> {
      const env: Record<string, string> = { ...process.env as Record<string, string>, AMBIT_REQUESTS: JSON.stringify(requests) };
      if (waitReady) { env['AMBIT_WAIT_READY'] = waitReady; env['AMBIT_WAIT_MS'] = '30000'; }
      const { stdout } = await execFileP(IP, ['netns', 'exec', ns, process.execPath, CLIENT_JS], { timeout: 60_000, env });
      return JSON.parse(stdout) as Result[];
    }

    async function stop(entry: { name: string; child: ChildProcess }): Promise<void> {
      const { child } = entry;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin?.end(); // the upstreams exit when their stdin closes
      child.kill('SIGTERM');
      // SIGKILL after 5 s; stop waiting after 10 s (the namespace's pids are killed next).
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      let gaveUp: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => { gaveUp = setTimeout(r, 10_000); })]);
      clearTimeout(timer);
      clearTimeout(gaveUp);
    }

    async function cleanup(): Promise<void> {
      // The proxy first (it holds connections to the upstreams), then the upstreams.
      for (const entry of [...children].reverse()) await stop(entry);
      children.length = 0;
      if (created) {
        // Anything still running in our namespace was started by this suite: end it by its pid.
        const left = await ip('netns', 'pids', ns).catch(() => ({ stdout: '' }));
        for (const pid of left.stdout.split(/\s+/).filter(Boolean).map(Number)) {
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
        }
        // Deleting the namespace takes its routes and nft table with it.
        await ip('netns', 'del', ns);
        created = false;
      }
      if (dir) await rm(dir, { recursive: true, force: true });
    }

    /** The access log's JSON lines (the proxy writes them within about a second). */
    async function accessLines(): Promise<AccessLine[]> {
      const text = await readFile(accessLogFile, 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as AccessLine).filter((l) => l.log === 'access');
    }

    beforeAll(async () => {
      if (!existsSync(CLI_JS)) throw new Error(`${CLI_JS} is missing: run \`npm run build\` first`);
      if (!existsSync(path.join(HELLO_DIR, 'dist/manifest.json'))) throw new Error('examples/filters/hello is not built (the global setup builds it)');
      try {
        dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-capture-'));
        accessLogFile = path.join(dir, 'access.log');
        const configPath = path.join(dir, 'mesh.yaml');
        await writeFile(configPath, meshYaml(HELLO_DIR));

        await ip('netns', 'add', ns);
        created = true;
        await ip('-n', ns, 'link', 'set', 'lo', 'up');
        // The service range is local in the namespace; `src 127.0.0.1` makes clients connect from
        // 127.0.0.1 (the `client` workload) instead of from the VIP itself.
        await ip('-n', ns, 'route', 'add', 'local', '10.96.7.0/24', 'dev', 'lo', 'src', '127.0.0.1');
        await inNs(NFT, ['-f', '-'], [
          'table ip ambit_test {',
          '  chain out {',
          '    type nat hook output priority -100; policy accept;',
          `    ip daddr 10.96.7.0/24 tcp dport 80 redirect to :${OUTBOUND}`,
          '  }',
          '}',
          '',
        ].join('\n'));

        const upstreams = startInNs('upstreams', [process.execPath, UPSTREAMS_JS], {
          AMBIT_UPSTREAMS: `alpha=127.0.0.1:${ALPHA.port},beta=127.0.0.1:${BETA.port}`,
        });
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`upstreams not ready after 10 s: ${upstreams.output()}`)), 10_000);
          const check = () => { if (upstreams.output().includes('READY\n')) { clearTimeout(timer); resolve(); } };
          upstreams.child.stdout?.on('data', check);
          upstreams.child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`upstreams exited (${code}): ${upstreams.output()}`)); });
          check();
        });

        const proxy = startInNs('proxy', [
          process.execPath, CLI_JS, 'run', '--config', configPath, '--workers', '1', '--access-log', accessLogFile, '--log-level', 'info',
        ]);
        const exited = new Promise<never>((_, reject) => proxy.child.once('exit', (code, signal) =>
          reject(new Error(`the proxy exited (${code ?? signal}) before it was ready:\n${proxy.output()}`))));
        exited.catch(() => undefined); // handled by the race below; later exits are reported by the tests
        // Ready, then the requests, in one client run: /ready polled from inside the namespace (bounded).
        results = await Promise.race([
          client([
            { url: `http://${ALPHA.vip}/x` },
            { url: `http://${BETA.vip}/y` },
            { url: `http://${BETA.vip}/admin` },
            { url: `http://127.0.0.1:${ADMIN}/config_dump` },
          ], `http://127.0.0.1:${ADMIN}/ready`),
          exited,
        ]).catch((e: unknown) => {
          throw new Error(`${e instanceof Error ? e.message : String(e)}\nproxy output:\n${proxy.output()}`);
        });
      } catch (error) {
        await cleanup();
        throw error;
      }
    });

    afterAll(async () => {
      await cleanup();
      const { stdout } = await ip('netns', 'list');
      expect(stdout).not.toContain(ns);
    });

    it('sends the connection to 10.96.7.1 to alpha as an L4 splice: no filter, no proxy headers', () => {
      const r = results[0]!;
      expect(r.error).toBeUndefined();
      expect(r.status).toBe(200);
      const echo = r.body as Echo;
      expect(echo.upstream).toBe('alpha');
      expect(echo.path).toBe('/x');
      // Bytes spliced as sent: the client's Host header, nothing added by a filter or the L7 path.
      expect(echo.headers['host']).toBe(ALPHA.vip);
      expect(echo.headers['x-ambit-hello']).toBeUndefined();
      expect(echo.headers['x-request-id']).toBeUndefined();
      expect(r.headers?.['x-ambit-attempts']).toBeUndefined();
      expect(r.headers?.['x-upstream']).toBe('alpha');
    });

    it('sends requests to 10.96.7.2 to beta through the hello filter, with the client workload as source', () => {
      const r = results[1]!;
      expect(r.error).toBeUndefined();
      expect(r.status).toBe(200);
      const echo = r.body as Echo;
      expect(echo.upstream).toBe('beta');
      expect(echo.path).toBe('/y');
      expect(echo.headers['x-ambit-hello']).toBe('hello from client');
      expect(echo.headers['x-request-id']).toMatch(/\S/);
      expect(r.headers?.['x-ambit-attempts']).toBe('1');
      expect(r.headers?.['x-upstream']).toBe('beta');

      const denied = results[2]!;
      expect(denied.status).toBe(403);
      expect(String(denied.body)).toMatch(/forbidden by policy hello: \/admin is denied/);
    });

    it('leaves the client seeing the VIP as its peer (getpeername), connected from 127.0.0.1', () => {
      expect(results[0]!.socket).toMatchObject({ remoteAddress: ALPHA.vip, remotePort: 80, localAddress: '127.0.0.1' });
      expect(results[1]!.socket).toMatchObject({ remoteAddress: BETA.vip, remotePort: 80, localAddress: '127.0.0.1' });
      expect(results[2]!.socket).toMatchObject({ remoteAddress: BETA.vip, remotePort: 80 });
    });

    it('reports capture by SO_ORIGINAL_DST in /config_dump', () => {
      const dump = results[3]!;
      expect(dump.status).toBe(200);
      const body = dump.body as { capture: { originalDestination: string; reason?: string; mode?: string }; listeners: Record<string, { address: string; port: number }> };
      // No workload has a cgroup: the proxy installs no capture of its own (the suite's nft rule captures).
      expect(body.capture).toMatchObject({ originalDestination: 'SO_ORIGINAL_DST when the socket has one, else the listener target', mode: 'none' });
      expect(body.listeners['outbound']).toEqual({ address: '127.0.0.1', port: OUTBOUND });
    });

    it('writes access log lines naming the original destination, the service and the upstream', async () => {
      const betaRequest = (l: AccessLine) => l.type === 'request' && l['path'] === '/y';
      const alphaConnection = (l: AccessLine) => l.type === 'connection' && l['destination_service'] === 'alpha.test';
      let lines: AccessLine[] = [];
      // Lines are buffered for up to a second; wait for them, bounded.
      for (let i = 0; i < 50; i++) {
        lines = await accessLines();
        if (lines.some(betaRequest) && lines.some(alphaConnection) && lines.some((l) => l['path'] === '/admin')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(lines.find(betaRequest)).toMatchObject({
        direction: 'outbound',
        method: 'GET',
        response_code: 200,
        attempts: 1,
        destination_service: 'beta.test',
        upstream_cluster: 'beta.test',
        upstream_host: `127.0.0.1:${BETA.port}`,
        downstream_local_address: `${BETA.vip}:80`,
        source_workload: 'client',
        source_namespace: 'test',
        local_reply: null,
      });
      expect(lines.find((l) => l.type === 'request' && l['path'] === '/admin')).toMatchObject({
        response_code: 403,
        destination_service: 'beta.test',
        downstream_local_address: `${BETA.vip}:80`,
        local_reply: expect.stringMatching(/hello/),
      });
      expect(lines.find(alphaConnection)).toMatchObject({
        direction: 'outbound',
        mode: 'l4',
        upstream_cluster: 'alpha.test',
        upstream_host: `127.0.0.1:${ALPHA.port}`,
        downstream_local_address: `${ALPHA.vip}:80`,
        source_workload: 'client',
        error: null,
      });
      // Bytes written to the client: the response head and body (not 0: runtime/src/proxy/http.ts
      // reads the socket's count after Node has detached it from the response).
      expect(lines.find(betaRequest)?.['bytes_sent']).toBe(Number(results[1]!.headers?.['content-length']));
      // alpha's request never went through the L7 path.
      expect(lines.filter((l) => l.type === 'request' && l['destination_service'] === 'alpha.test')).toEqual([]);
    });

    it('closes a connection made to the listener directly: no original destination and no target', async () => {
      const [direct] = await client([{ url: `http://127.0.0.1:${OUTBOUND}/direct` }]);
      expect(direct?.status).toBeUndefined();
      expect(direct?.error).toMatch(/ECONNRESET|socket hang up/);
      // And a captured request still works afterwards.
      const [again] = await client([{ url: `http://${ALPHA.vip}/again` }]);
      expect((again?.body as Echo | undefined)?.upstream).toBe('alpha');
    });
  },
);
