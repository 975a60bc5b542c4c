/**
 * Bytes between a tunnel stream and its upstream: both directions piped (backpressure
 * through `pipe`), each end's half-close carried to the other, an error or premature
 * close on either side aborting both.
 */
import { finished, type Duplex } from 'node:stream';

export interface PipeResult {
  /** Bytes read from `a` (and written to `b`). */
  bytesFromA: number;
  /** Bytes read from `b` (and written to `a`). */
  bytesFromB: number;
  /** Why the pipe was aborted, if it was. */
  error?: string;
}

export interface PipeOptions {
  /** How to abort each side (default `destroy()`); an HTTP/2 stream wants a RST_STREAM code. */
  abortA?: (a: Duplex) => void;
  abortB?: (b: Duplex) => void;
  /** Names for error messages. */
  nameA?: string;
  nameB?: string;
}

/**
 * Pipes `a` ⇄ `b` and resolves once both sides are done (each has ended its readable and
 * finished its writable side) or the pipe was aborted. A side that finishes cleanly is
 * not destroyed here: the caller decides (an HTTP/2 stream closes by itself).
 */
export function pipeBothWays(a: Duplex, b: Duplex, options: PipeOptions = {}): Promise<PipeResult> {
  const nameA = options.nameA ?? 'a';
  const nameB = options.nameB ?? 'b';
  return new Promise((resolve) => {
    const result: PipeResult = { bytesFromA: 0, bytesFromB: 0 };
    let aborted = false;
    let pending = 2;
    const abort = (side: string, e: Error) => {
      result.error ??= `${side}: ${e.message}`;
      if (aborted) return;
      aborted = true;
      a.unpipe(b);
      b.unpipe(a);
      (options.abortA ?? ((s: Duplex) => s.destroy()))(a);
      (options.abortB ?? ((s: Duplex) => s.destroy()))(b);
    };
    const done = () => {
      if (--pending === 0) resolve(result);
    };
    a.on('data', (chunk: Buffer) => { result.bytesFromA += chunk.length; });
    b.on('data', (chunk: Buffer) => { result.bytesFromB += chunk.length; });
    finished(a, (err) => { if (err) abort(nameA, err); done(); });
    finished(b, (err) => { if (err) abort(nameB, err); done(); });
    a.pipe(b);
    b.pipe(a);
  });
}
