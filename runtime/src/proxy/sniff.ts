/**
 * Protocol detection from the first bytes a client sends, not from the port: the
 * HTTP/2 connection preface, an HTTP/1.x request line, or anything else (opaque).
 * The bytes read are pushed back onto the socket for whoever handles it next.
 */
import type { Duplex } from 'node:stream';

export type SniffedProtocol = 'http1' | 'http2' | 'opaque';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** Longest method we recognise plus the space after it. */
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
const NEED = H2_PREFACE.length;

/** Classifies what is known so far; undefined: need more bytes. */
export function classify(buf: Buffer): SniffedProtocol | undefined {
  const n = Math.min(buf.length, NEED);
  if (buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) {
    return buf.length >= NEED ? 'http2' : undefined;
  }
  let undecided = false;
  for (const m of METHODS) {
    const want = m.length + 1;
    const have = Math.min(buf.length, want);
    let match = true;
    for (let i = 0; i < have; i++) {
      const expected = i < m.length ? m.charCodeAt(i) : 0x20;
      if (buf[i] !== expected) { match = false; break; }
    }
    if (!match) continue;
    if (have === want) return 'http1';
    undecided = true;
  }
  return undecided ? undefined : 'opaque';
}

export class SniffTimeout extends Error {}

/**
 * Reads until the protocol is known, then pauses the socket with the bytes put back.
 * Rejects with SniffTimeout when the client sends too little within `timeoutMs`.
 */
export function sniff(socket: Duplex, timeoutMs: number): Promise<SniffedProtocol> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, p?: SniffedProtocol) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.pause();
      if (buf.length > 0) socket.unshift(buf);
      if (err) reject(err);
      else resolve(p!);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const p = classify(buf);
      if (p) done(undefined, p);
    };
    const onEnd = () => done(undefined, 'opaque');
    const onError = (e: Error) => done(e);
    const timer = setTimeout(() => done(new SniffTimeout(`no protocol could be told from the first ${buf.length} bytes within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
    socket.resume();
  });
}
