/** Small TCP pieces for the HBONE tests: the echo workload, a recording tap, bounded waits. */
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { freePort } from '../upstreams.js';

/** Rejects when `p` has not settled within `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Polls `check` every 10 ms, at most `ms`. */
export async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not true within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Listening {
  port: number;
  close(): Promise<void>;
}

async function listen(server: net.Server, sockets: Set<net.Socket>): Promise<Listening> {
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

export const EOF_MARK = '<eof-seen>';

/**
 * The workload: echoes what it reads; when the client ends its side, writes `EOF_MARK`
 * and ends its own (so a half-close is visible end to end).
 */
export function echoServer(): Promise<Listening & { connections: number; open: number }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    s.on('error', () => undefined);
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end(EOF_MARK));
  });
  return listen(server, sockets).then((l) => ({
    ...l,
    get connections() { return connections; },
    get open() { return sockets.size; },
  }));
}

/** Accepts connections and never says a word. */
export function silentServer(): Promise<Listening & { connections: number }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.on('error', () => undefined);
  });
  return listen(server, sockets).then((l) => ({ ...l, get connections() { return connections; } }));
}

/** Accepts connections and resets each one (TCP RST) on its first byte. */
export function resettingServer(): Promise<Listening> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.once('data', () => s.resetAndDestroy());
  });
  return listen(server, sockets);
}

/** A TCP relay in front of `targetPort` that records every byte crossing it, both ways. */
export function recordingTap(targetPort: number): Promise<Listening & { toServer: Buffer[]; toClient: Buffer[]; connections: number }> {
  const sockets = new Set<net.Socket>();
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  let connections = 0;
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
    sockets.add(upstream);
    upstream.once('close', () => sockets.delete(upstream));
    client.on('data', (d: Buffer) => toServer.push(Buffer.from(d)));
    upstream.on('data', (d: Buffer) => toClient.push(Buffer.from(d)));
    client.pipe(upstream);
    upstream.pipe(client);
    const kill = () => { client.destroy(); upstream.destroy(); };
    client.on('error', kill);
    upstream.on('error', kill);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  return listen(server, sockets).then((l) => ({ ...l, toServer, toClient, get connections() { return connections; } }));
}

/** A port nothing listens on (bound, then released). */
export const closedPort = freePort;

/** Writes `msg` and reads until as many bytes came back. */
export function echoOnce(stream: Duplex, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const want = Buffer.byteLength(msg);
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= want) {
        cleanup();
        resolve(Buffer.concat(chunks).toString());
      }
    };
    const onEnd = () => { cleanup(); reject(new Error(`stream ended after ${got} of ${want} bytes`)); };
    const onError = (e: Error) => { cleanup(); reject(e); };
    const cleanup = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.pause();
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.write(msg);
  });
}

/** Everything the stream delivers until its end. */
export function readAll(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.once('end', () => resolve(Buffer.concat(chunks).toString()));
    stream.once('error', reject);
    stream.resume();
  });
}

/**
 * Writes `total` random bytes (respecting backpressure), ends, and reads until the stream
 * ends; resolves with the digests of what went out (then `suffix`, which the far end is
 * expected to add) and of what came back.
 */
export async function pumpThrough(stream: Duplex, total: number, suffix = ''): Promise<{ sent: string; received: string; receivedBytes: number }> {
  const { createHash, randomBytes } = await import('node:crypto');
  const out = createHash('sha256');
  const back = createHash('sha256');
  let receivedBytes = 0;
  const reading = new Promise<void>((resolve, reject) => {
    stream.on('data', (d: Buffer) => { back.update(d); receivedBytes += d.length; });
    stream.once('end', () => resolve());
    stream.once('error', reject);
    stream.resume();
  });
  const chunk = randomBytes(64 * 1024);
  for (let sent = 0; sent < total; sent += chunk.length) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
    out.update(piece);
    if (!stream.write(piece)) await new Promise<void>((r) => stream.once('drain', () => r()));
  }
  stream.end();
  await reading;
  out.update(suffix);
  return { sent: out.digest('hex'), received: back.digest('hex'), receivedBytes };
}
