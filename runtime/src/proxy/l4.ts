/**
 * L4 splice: bytes are piped between the client and an upstream endpoint, never
 * parsed. Half-closes cross in both directions; an error on either side closes both.
 * The client is a TCP socket, or an HBONE tunnel stream on inbound; the upstream is a
 * TCP connection, or a tunnel made by a dialer on outbound.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dialer } from '../upstream/dialer.js';

export interface SpliceResult {
  bytesReceived: number;
  bytesSent: number;
  /** Why the connection ended abnormally, if it did. */
  error?: string;
  /** The upstream connection never came up. */
  connectFailed: boolean;
}

type Upstream = Duplex & { destroySoon?: () => void };

/** A TCP connection to `address:port` that rejects on failure or after `timeoutMs`. */
function connectTcp(address: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const upstream = net.connect({ host: address, port, allowHalfOpen: true, noDelay: true });
    const timer = timeoutMs > 0
      ? setTimeout(() => upstream.destroy(new Error(`connect to ${address}:${port} timed out after ${timeoutMs} ms`)), timeoutMs)
      : undefined;
    upstream.once('error', (e) => { if (timer) clearTimeout(timer); reject(e); });
    upstream.once('connect', () => {
      if (timer) clearTimeout(timer);
      upstream.removeAllListeners('error');
      resolve(upstream);
    });
  });
}

/** Ends a side once what it has to write is flushed, and closes it. */
function release(s: Upstream): void {
  if (s.destroySoon) s.destroySoon();
  else if (!s.destroyed) s.end();
}

/**
 * Connects to `address:port` (or through `dial`) and pipes both ways until both sides
 * are done. `prelude` is written to the upstream first (an HTTP upgrade request, for instance).
 */
export function splice(
  client: Duplex, address: string, port: number, connectTimeoutMs: number, prelude?: Buffer, dial?: Dialer,
): Promise<SpliceResult> {
  return new Promise((resolve) => {
    // A TCP client counts its own bytes; a tunnel stream is counted here.
    const tcpClient = client instanceof net.Socket ? client : undefined;
    let bytesReceived = 0;
    let bytesSent = 0;
    let error: string | undefined;
    let upstream: Upstream | undefined;
    let clientClosed = false;
    let settled = false;
    const finish = (connectFailed: boolean) => {
      if (settled) return;
      if (!client.destroyed || (upstream && !upstream.destroyed)) return;
      settled = true;
      resolve({ bytesReceived: tcpClient?.bytesRead ?? bytesReceived, bytesSent: tcpClient?.bytesWritten ?? bytesSent, error, connectFailed });
    };
    client.on('error', (e: Error) => {
      error ??= `client: ${e.message}`;
      client.destroy();
      upstream?.destroy();
    });
    client.once('close', () => {
      clientClosed = true;
      upstream?.destroy();
      finish(upstream === undefined);
    });

    const opening: Promise<Upstream> = dial ? dial.open(connectTimeoutMs) : connectTcp(address, port, connectTimeoutMs);
    opening.then((up) => {
      upstream = up;
      if (clientClosed || client.destroyed) {
        up.destroy();
        up.once('close', () => finish(false));
        return;
      }
      up.on('error', (e: Error) => {
        error ??= `upstream: ${e.message}`;
        client.destroy();
        up.destroy();
      });
      up.once('close', () => {
        // A clean close (both directions ended) leaves the client to flush what it still
        // has to write, then releases it: with the upstream gone its pipe is gone too, so
        // the client is no longer read and would never see its own end. Any other close
        // ends the client at once.
        if (!up.readableEnded || !up.writableFinished) client.destroy();
        else release(client as Upstream);
        finish(false);
      });
      if (prelude && prelude.length > 0) up.write(prelude);
      if (!tcpClient) {
        client.on('data', (c: Buffer) => { bytesReceived += c.length; });
        up.on('data', (c: Buffer) => { bytesSent += c.length; });
      }
      client.pipe(up);
      up.pipe(client);
      client.resume();
      // When both directions have ended, make sure both sides are released.
      let ends = 0;
      const onEnd = () => {
        if (++ends < 2) return;
        release(client as Upstream);
        release(up);
      };
      client.once('end', onEnd);
      up.once('end', onEnd);
    }, (e: Error) => {
      error ??= `upstream: ${e.message}`;
      client.destroy();
      finish(true);
    });
  });
}
