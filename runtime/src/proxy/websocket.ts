/**
 * HTTP/1.1 Upgrade (WebSocket and friends): after the request phase, the request is
 * written to an upstream endpoint as it came, and from then on bytes are spliced.
 * The upstream's `101 Switching Protocols` reaches the client unchanged.
 */
import net, { type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { RequestHead } from '../deps.js';

export function upgradeUpstream(
  req: IncomingMessage, head: RequestHead, client: Socket, firstBytes: Buffer, address: string, port: number, connectTimeoutMs: number,
): Promise<{ bytesReceived: number; bytesSent: number; error?: string }> {
  return new Promise((resolve) => {
    const upstream = net.connect({ host: address, port, noDelay: true });
    let error: string | undefined;
    const timer = setTimeout(() => upstream.destroy(new Error(`connect timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs);
    upstream.once('connect', () => {
      clearTimeout(timer);
      const lines = [`${head.method} ${head.path} HTTP/1.1`, `host: ${head.authority}`];
      for (const [k, v] of head.headers) lines.push(`${k}: ${v}`);
      // Restore the hop-by-hop headers the upgrade needs.
      lines.push(`connection: upgrade`, `upgrade: ${req.headers.upgrade ?? ''}`);
      upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (firstBytes.length > 0) upstream.write(firstBytes);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    const fail = (side: string) => (e: Error) => {
      error ??= `${side}: ${e.message}`;
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', fail('upstream'));
    client.on('error', fail('client'));
    let closed = 0;
    const done = () => {
      if (++closed < 2) return;
      clearTimeout(timer);
      resolve({ bytesReceived: client.bytesRead, bytesSent: client.bytesWritten, error });
    };
    upstream.once('close', () => { client.destroy(); done(); });
    client.once('close', () => { upstream.destroy(); done(); });
  });
}
