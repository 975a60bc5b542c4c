/**
 * L4 splice: bytes are piped between the client and an upstream endpoint, never
 * parsed. Half-closes cross in both directions; an error on either side closes both.
 */
import net, { type Socket } from 'node:net';

export interface SpliceResult {
  bytesReceived: number;
  bytesSent: number;
  /** Why the connection ended abnormally, if it did. */
  error?: string;
  /** The upstream connection never came up. */
  connectFailed: boolean;
}

/**
 * Connects to `address:port` and pipes both ways until both sides are done. `prelude`
 * is written to the upstream first (an HTTP upgrade request, for instance).
 */
export function splice(client: Socket, address: string, port: number, connectTimeoutMs: number, prelude?: Buffer): Promise<SpliceResult> {
  return new Promise((resolve) => {
    const upstream = net.connect({ host: address, port, allowHalfOpen: true, noDelay: true });
    let connected = false;
    let error: string | undefined;
    let settled = false;
    const timer = connectTimeoutMs > 0
      ? setTimeout(() => upstream.destroy(new Error(`connect to ${address}:${port} timed out after ${connectTimeoutMs} ms`)), connectTimeoutMs)
      : undefined;
    const finish = () => {
      if (settled) return;
      if (!client.destroyed || !upstream.destroyed) return;
      settled = true;
      resolve({ bytesReceived: client.bytesRead, bytesSent: client.bytesWritten, error, connectFailed: !connected });
    };
    upstream.once('connect', () => {
      connected = true;
      if (timer) clearTimeout(timer);
      if (prelude && prelude.length > 0) upstream.write(prelude);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    const fail = (side: string) => (e: Error) => {
      error ??= `${side}: ${e.message}`;
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', fail('upstream'));
    client.on('error', fail('client'));
    // When both directions have ended, make sure both sockets are released.
    let ends = 0;
    const onEnd = () => { if (++ends === 2) { client.destroySoon?.(); upstream.destroySoon?.(); } };
    client.once('end', onEnd);
    upstream.once('end', onEnd);
    client.once('close', () => { if (!connected) upstream.destroy(); finish(); });
    upstream.once('close', () => { if (timer) clearTimeout(timer); if (!connected) client.destroy(); finish(); });
  });
}
