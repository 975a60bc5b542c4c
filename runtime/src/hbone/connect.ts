/** The default upstream of an allowed tunnel: a TCP connection to the CONNECT authority. */
import net from 'node:net';
import { HboneError } from './errors.js';
import { formatAuthority, type SocketAddress } from './authority.js';

/** The default upstream connect timeout. */
export const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Connects to `target` with half-open allowed (a tunnel carries each direction's end
 * separately). Rejects with `HboneError` `connect-failure` or `connect-timeout`.
 */
export function connectTcp(target: SocketAddress, timeoutMs = DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const where = formatAuthority(target);
    const socket = net.connect({ host: target.address, port: target.port, allowHalfOpen: true, noDelay: true });
    const timer = timeoutMs > 0
      ? setTimeout(() => {
        socket.destroy();
        reject(new HboneError('connect-timeout', `connect to ${where} timed out after ${timeoutMs} ms`));
      }, timeoutMs)
      : undefined;
    timer?.unref();
    const onError = (e: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      reject(new HboneError('connect-failure', `connect to ${where} failed: ${e.code ?? e.message}`, { cause: e }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      if (timer) clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}
