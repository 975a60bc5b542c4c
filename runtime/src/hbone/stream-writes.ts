/**
 * Tunnel streams take Buffers only. On Node 20, a batch of writes that mixes strings and
 * Buffers (`_writev`, which `node:http` uses for a response's head and body written
 * together, as for every local reply) reaches an HTTP/2 stream with the strings' bytes
 * released before nghttp2 sends them: the peer then reads freed memory in place of
 * `HTTP/1.1 403 Forbidden`. Joining a batch into one Buffer first sends what was written;
 * single writes and batches of Buffers already arrive intact.
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
