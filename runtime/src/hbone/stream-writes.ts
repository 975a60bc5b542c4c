/**
 * Batched writes to a tunnel stream go as one Buffer. On Node 20, a batch that mixes strings
 * and Buffers (`_writev`: `node:http` writes a response's head and body together that way, as
 * for every local reply) reached the peer over an HTTP/2 stream with the head's first bytes
 * overwritten by freed memory: node 1 read garbage where `HTTP/1.1 403 Forbidden` belonged.
 * Joining the batch into one Buffer first sends what was written. Single writes (how proxied
 * responses go) arrived intact, so they are left as they are.
 *
 * Applied to both ends of every tunnel (the CONNECT stream an outbound client writes to,
 * the stream an inbound node serves), before anyone writes to them.
 */
import type { Http2Stream } from 'node:http2';

type Chunk = { chunk: Buffer | string; encoding: BufferEncoding };
type WritableInternals = {
  _write(chunk: Buffer, encoding: BufferEncoding | 'buffer', cb: (e?: Error | null) => void): void;
  _writev?: (chunks: Chunk[], cb: (e?: Error | null) => void) => void;
};

export function joinBatchedWrites<S extends Http2Stream>(stream: S): S {
  const s = stream as unknown as WritableInternals;
  const write = s._write.bind(stream);
  s._writev = (chunks, cb) => {
    const buffers = chunks.map((c) => (typeof c.chunk === 'string' ? Buffer.from(c.chunk, c.encoding) : c.chunk));
    write(buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers), 'buffer', cb);
  };
  return stream;
}
