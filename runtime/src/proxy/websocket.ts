/**
 * HTTP/1.1 Upgrade (WebSocket and friends): after the request phase, the request is
 * written to an upstream endpoint as it came, and from then on bytes are spliced.
 * The upstream's `101 Switching Protocols` reaches the client unchanged.
 */
import type { Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { RequestHead } from '../deps.js';
import type { Dialer } from '../upstream/dialer.js';
import { splice, type SpliceResult } from './l4.js';

export function upgradeUpstream(
  req: IncomingMessage, head: RequestHead, client: Socket, firstBytes: Buffer, address: string, port: number, connectTimeoutMs: number, dial?: Dialer,
): Promise<SpliceResult> {
  const lines = [`${head.method} ${head.path} HTTP/1.1`, `host: ${head.authority}`];
  for (const [k, v] of head.headers) lines.push(`${k}: ${v}`);
  // Restore the hop-by-hop headers the upgrade needs.
  lines.push('connection: upgrade', `upgrade: ${req.headers.upgrade ?? ''}`);
  const prelude = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), firstBytes]);
  return splice(client, address, port, connectTimeoutMs, prelude, dial);
}
