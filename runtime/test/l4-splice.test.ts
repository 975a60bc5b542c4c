// The L4 splice over real sockets: everything the upstream sent reaches a slow client
// before the connection is released, by TCP connect or through a dialer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net, { type AddressInfo } from 'node:net';
import { splice, type SpliceResult } from '../src/proxy/l4.js';
import type { Dialer } from '../src/upstream/dialer.js';

// More than the kernel buffers of both sockets hold, so the proxy must keep some of it.
const SIZE = 48 * 1024 * 1024;

describe('L4 splice', () => {
  let upstream: net.Server;
  let upstreamPort: number;

  beforeAll(async () => {
    // Sends SIZE bytes, then ends; reads whatever the client sends.
    upstream = net.createServer({ allowHalfOpen: true }, (s) => {
      s.resume();
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      let sent = 0;
      const pump = () => {
        while (sent < SIZE) {
          sent += chunk.length;
          if (!s.write(chunk)) { s.once('drain', pump); return; }
        }
        s.end();
      };
      pump();
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    upstreamPort = (upstream.address() as AddressInfo).port;
  });

  afterAll(() => new Promise<void>((r) => upstream.close(() => r())));

  async function through(dial?: Dialer): Promise<{ received: number; result: SpliceResult }> {
    let result!: Promise<SpliceResult>;
    const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      result = splice(client, '127.0.0.1', upstreamPort, 2_000, undefined, dial);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const client = net.connect({ port: (proxy.address() as AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    client.pause();
    // Nothing to send: the client's end is at once, so the upstream can close while the
    // client, a slow reader, has not read yet and the proxy still holds bytes for it.
    client.end();
    await new Promise((r) => setTimeout(r, 300));
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      client.on('data', (c: Buffer) => { received += c.length; });
      client.once('end', () => resolve());
      client.once('error', reject);
      client.resume();
    });
    client.destroy();
    const r = await result;
    await new Promise<void>((res) => proxy.close(() => res()));
    return { received, result: r };
  }

  it('delivers every byte to a slow client after the upstream has closed (TCP connect)', async () => {
    const { received, result } = await through();
    expect(received).toBe(SIZE);
    expect(result.bytesSent).toBe(SIZE);
    expect(result.error).toBeUndefined();
    expect(result.connectFailed).toBe(false);
  });

  it('the same through a dialer (how HBONE tunnels are made)', async () => {
    const dial: Dialer = {
      key: 'test',
      open: () => new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: upstreamPort, allowHalfOpen: true });
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      }),
    };
    const { received, result } = await through(dial);
    expect(received).toBe(SIZE);
    expect(result.bytesSent).toBe(SIZE);
  });

  it('a dialer that fails ends the client and reports the reason', async () => {
    const dial: Dialer = { key: 'fails', open: () => Promise.reject(new Error('AMBIT_ERR_NO_SOURCE_IDENTITY: no certificate')) };
    const { received, result } = await through(dial);
    expect(received).toBe(0);
    expect(result.connectFailed).toBe(true);
    expect(result.error).toContain('AMBIT_ERR_NO_SOURCE_IDENTITY');
  });
});
