// @ambit/addon against real sockets: plain loopback connections in this process, and a REAL
// netfilter redirect (nft `redirect`) inside a network namespace of our own, which the suite
// creates and deletes (with everything in it: addresses, nft tables, the listener process).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import * as addon from '../addon/src/index.js';
import { IP, NFT, netnsSkipReason } from './support/netns.js';

const execFileP = promisify(execFile);

interface Pair {
  client: net.Socket;
  accepted: net.Socket;
  close(): Promise<void>;
}

/** A TCP connection over 127.0.0.1 in this process: both ends, connected. */
async function loopbackPair(): Promise<Pair> {
  const server = net.createServer();
  const acceptedP = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const client = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const accepted = await acceptedP;
  return {
    client,
    accepted,
    async close() {
      client.destroy();
      accepted.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function fdOf(socket: net.Socket): number {
  const fd = addon.socketFd(socket);
  if (fd === undefined) throw new Error('socket has no fd');
  return fd;
}

describe('@ambit/addon on plain loopback sockets', () => {
  it('is built and loaded', () => {
    expect(addon.available, addon.unavailableReason).toBe(true);
    expect(addon.unavailableReason).toBeUndefined();
  });

  it('reports no original destination for a connection that was not redirected', async () => {
    const pair = await loopbackPair();
    try {
      expect(addon.originalDst(fdOf(pair.accepted))).toBeNull();
      expect(addon.originalDst(fdOf(pair.client))).toBeNull();
    } finally {
      await pair.close();
    }
  });

  it('gives each socket its own stable non-zero cookie, and both the same netns cookie', async () => {
    const pair = await loopbackPair();
    try {
      const a = addon.socketCookie(fdOf(pair.accepted));
      const b = addon.socketCookie(fdOf(pair.client));
      expect(typeof a).toBe('bigint');
      expect(typeof b).toBe('bigint');
      expect(a).not.toBe(0n);
      expect(b).not.toBe(0n);
      expect(a).not.toBe(b);
      expect(addon.socketCookie(fdOf(pair.accepted))).toBe(a);
      const nsA = addon.netnsCookie(fdOf(pair.accepted));
      expect(typeof nsA).toBe('bigint'); // this kernel is >= 5.14
      expect(addon.netnsCookie(fdOf(pair.client))).toBe(nsA);
    } finally {
      await pair.close();
    }
  });

  it('throws errors with an errno code for bad descriptors, TypeError/RangeError for bad arguments', () => {
    expect(() => addon.originalDst(999_999)).toThrow(
      expect.objectContaining({ code: 'EBADF', errno: 9, syscall: 'getsockname' }),
    );
    expect(() => addon.socketCookie(999_999)).toThrow(/socketCookie\(fd 999999\): getsockopt\(SO_COOKIE\) failed: EBADF/);
    const file = openSync(new URL(import.meta.url), 'r');
    try {
      expect(() => addon.originalDst(file)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
      expect(() => addon.netnsCookie(file)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
    } finally {
      closeSync(file);
    }
    expect(() => addon.originalDst('3' as unknown as number)).toThrow(TypeError);
    expect(() => addon.originalDst(-1)).toThrow(RangeError);
    expect(() => addon.originalDst(1.5)).toThrow(RangeError);
  });

  it('socketFd gives the descriptor of a connected socket and undefined otherwise', async () => {
    expect(addon.socketFd(new net.Socket())).toBeUndefined();
    const pair = await loopbackPair();
    const fd = addon.socketFd(pair.client);
    expect(fd).toBeTypeOf('number');
    expect(fd).toBeGreaterThan(2);
    pair.client.destroy();
    expect(addon.socketFd(pair.client)).toBeUndefined();
    await pair.close();
  });

  it('falls back to null answers with an actionable reason when the addon is unavailable', async () => {
    vi.stubEnv(addon.DISABLE_ENV, '1');
    vi.resetModules();
    try {
      const fallback = await import('../addon/src/index.js');
      expect(fallback.available).toBe(false);
      expect(fallback.unavailableReason).toMatch(/AMBIT_DISABLE_ADDON=1/);
      expect(fallback.originalDst(0)).toBeNull();
      expect(fallback.socketCookie(0)).toBeNull();
      expect(fallback.netnsCookie(0)).toBeNull();
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});

// ---- a real redirect in a network namespace ---------------------------------------------------


const skipReason = netnsSkipReason();

// The listener, run by `ip netns exec <ns> node`: on each accepted connection it answers one JSON
// line with what the addon says about that socket, then closes. It exits when its stdin closes, so
// it cannot outlive the test process.
const LISTENER = `
import net from 'node:net';
import { createRequire } from 'node:module';
const addon = createRequire(process.env.AMBIT_ADDON_NODE)(process.env.AMBIT_ADDON_NODE);
const specs = process.env.AMBIT_LISTEN.split(',');
let ready = 0;
for (const spec of specs) {
  const cut = spec.lastIndexOf(':');
  const host = spec.slice(0, cut).replace(/^\\[|\\]$/g, '');
  const port = Number(spec.slice(cut + 1));
  const server = net.createServer((sock) => {
    let reply;
    try {
      const fd = sock._handle.fd;
      reply = {
        listener: port,
        originalDst: addon.originalDst(fd),
        socketCookie: String(addon.socketCookie(fd)),
        netnsCookie: String(addon.netnsCookie(fd)),
      };
    } catch (e) {
      reply = { listener: port, error: { code: e.code, message: e.message } };
    }
    sock.end(JSON.stringify(reply) + '\\n');
  });
  server.on('error', (e) => { console.error('listen ' + spec + ': ' + e.message); process.exit(1); });
  server.listen({ host, port, ipv6Only: false }, () => {
    if (++ready === specs.length) process.stdout.write('READY\\n');
  });
}
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

// The client, run by `ip netns exec <ns> node`: connects to each target in turn and prints a JSON
// array of what each listener answered (or the connection's error code).
const CLIENT = `
import net from 'node:net';
const out = [];
for (const t of JSON.parse(process.env.AMBIT_TARGETS)) {
  out.push(await new Promise((resolve) => {
    const s = net.connect({ host: t.host, port: t.port });
    let buf = '';
    s.setEncoding('utf8');
    s.setTimeout(5000, () => { s.destroy(); resolve({ error: 'ETIMEDOUT' }); });
    s.on('data', (d) => { buf += d; });
    s.on('end', () => { try { resolve(JSON.parse(buf)); } catch { resolve({ error: 'bad reply: ' + buf }); } });
    s.on('error', (e) => resolve({ error: e.code ?? e.message }));
  }));
}
process.stdout.write(JSON.stringify(out));
`;

interface Reply {
  listener?: number;
  originalDst?: addon.OriginalDestination | null;
  socketCookie?: string;
  netnsCookie?: string;
  error?: unknown;
}

describe.skipIf(skipReason !== undefined)(
  `@ambit/addon after a real nft redirect in a network namespace${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const ns = `ambit-addon-${process.pid}-${randomBytes(3).toString('hex')}`;
    let created = false;
    let hasV6 = false;
    let listener: ChildProcess | undefined;
    let listenerStderr = '';

    const ip = (...args: string[]) => execFileP(IP, args, { timeout: 10_000 });
    const inNs = (cmd: string, args: string[], input?: string) =>
      new Promise<string>((resolve, reject) => {
        const child = execFile(IP, ['netns', 'exec', ns, cmd, ...args], { timeout: 15_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${cmd} ${args.join(' ')} in ${ns}: ${err.message}\n${stderr}`)) : resolve(stdout),
        );
        child.stdin?.end(input ?? '');
      });

    async function connectFromNs(targets: { host: string; port: number }[]): Promise<Reply[]> {
      const { stdout } = await execFileP(
        IP,
        ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', CLIENT],
        { timeout: 20_000, env: { ...process.env, AMBIT_TARGETS: JSON.stringify(targets) } },
      );
      return JSON.parse(stdout) as Reply[];
    }

    async function cleanup(): Promise<void> {
      const child = listener;
      listener = undefined;
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        child.stdin?.end(); // the listener exits when its stdin closes
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      }
      if (created) {
        // Deleting the namespace takes its addresses and nft tables with it.
        await ip('netns', 'del', ns);
        created = false;
      }
    }

    beforeAll(async () => {
      try {
        await ip('netns', 'add', ns);
        created = true;
        await ip('-n', ns, 'link', 'set', 'lo', 'up');
        await ip('-n', ns, 'addr', 'add', '10.99.0.10/32', 'dev', 'lo');
        const v6 = await ip('-n', ns, '-6', 'addr', 'show', 'dev', 'lo');
        hasV6 = v6.stdout.includes('::1/128');
        if (hasV6) await ip('-n', ns, 'addr', 'add', 'fd00:99::10/128', 'dev', 'lo', 'nodad');

        // Locally generated connections to port 8080 (8081) go to the listener on 15001 (15002).
        let rules = `
          table ip ambit_test {
            chain out {
              type nat hook output priority -100; policy accept;
              tcp dport 8080 redirect to :15001
              tcp dport 8081 redirect to :15002
            }
          }`;
        if (hasV6) {
          rules += `
          table ip6 ambit_test6 {
            chain out {
              type nat hook output priority -100; policy accept;
              tcp dport 8080 redirect to :15002
            }
          }`;
        }
        await inNs(NFT, ['-f', '-'], rules);

        // 15001: IPv4 only. 15002: dual stack (IPv4 clients arrive as v4-mapped IPv6).
        const listen = hasV6 ? '127.0.0.1:15001,[::]:15002' : '127.0.0.1:15001,127.0.0.1:15002';
        const child = spawn(IP, ['netns', 'exec', ns, process.execPath, '--input-type=module', '-e', LISTENER], {
          env: { ...process.env, AMBIT_ADDON_NODE: addon.addonPath, AMBIT_LISTEN: listen },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        listener = child;
        child.stderr.setEncoding('utf8').on('data', (d: string) => (listenerStderr += d));
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`listener not ready after 10 s: ${listenerStderr}`)), 10_000);
          let out = '';
          child.stdout.setEncoding('utf8').on('data', (d: string) => {
            out += d;
            if (out.includes('READY\n')) {
              clearTimeout(timer);
              resolve();
            }
          });
          child.once('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`listener exited (${code}) before it was ready: ${listenerStderr}`));
          });
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

    it('reports the original IPv4 address and port of a redirected connection', async () => {
      const replies = await connectFromNs([
        { host: '10.99.0.10', port: 8080 },
        { host: '127.0.0.1', port: 8080 },
        { host: '10.99.0.10', port: 8081 },
      ]);
      expect(replies).toEqual([
        expect.objectContaining({ listener: 15001, originalDst: { address: '10.99.0.10', port: 8080, family: 4 } }),
        expect.objectContaining({ listener: 15001, originalDst: { address: '127.0.0.1', port: 8080, family: 4 } }),
        // On the dual-stack listener the socket is AF_INET6 with a v4-mapped address: still family 4.
        expect.objectContaining({ listener: 15002, originalDst: { address: '10.99.0.10', port: 8081, family: 4 } }),
      ]);
    });

    it('reports null for a connection made to the listener directly, though conntrack tracks it', async () => {
      const replies = await connectFromNs([
        { host: '127.0.0.1', port: 15001 },
        { host: '10.99.0.10', port: 15002 },
      ]);
      expect(replies).toEqual([
        expect.objectContaining({ listener: 15001, originalDst: null }),
        expect.objectContaining({ listener: 15002, originalDst: null }),
      ]);
    });

    it('reports the original IPv6 address and port of a redirected connection', async (ctx) => {
      ctx.skip(!hasV6, 'IPv6 is disabled in the namespace');
      const replies = await connectFromNs([{ host: 'fd00:99::10', port: 8080 }]);
      expect(replies).toEqual([
        expect.objectContaining({ listener: 15002, originalDst: { address: 'fd00:99::10', port: 8080, family: 6 } }),
      ]);
    });

    it('gives sockets in the namespace their own cookies and a different netns cookie', async () => {
      const replies = await connectFromNs([
        { host: '10.99.0.10', port: 8080 },
        { host: '10.99.0.10', port: 8080 },
      ]);
      const [a, b] = replies;
      expect(a?.socketCookie).toMatch(/^[1-9]\d*$/);
      expect(b?.socketCookie).toMatch(/^[1-9]\d*$/);
      expect(a?.socketCookie).not.toBe(b?.socketCookie);
      expect(a?.netnsCookie).toMatch(/^[1-9]\d*$/);
      expect(b?.netnsCookie).toBe(a?.netnsCookie);

      const pair = await loopbackPair();
      try {
        expect(String(addon.netnsCookie(fdOf(pair.client)))).not.toBe(a?.netnsCookie);
      } finally {
        await pair.close();
      }
    });
  },
);
