/**
 * A raw HTTP/2 client for abuse tests: frames written as bytes on a real socket (RFC 9113 §4),
 * header blocks in plain HPACK literals (no Huffman, no dynamic table), and the server's frames
 * parsed as they arrive.
 */
import net from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, REFUSED_STREAM: 7, ENHANCE_YOUR_CALM: 0xb } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) { out.push((v % 128) + 128); v = Math.floor(v / 128); }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7, 0), b]);
}

/** A header block: each field a literal without indexing, with a literal name. */
export function headerBlock(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.flatMap(([n, v]) => [Buffer.from([0]), hpackString(n), hpackString(v)]));
}

export function request(stream: number, path: string, { method = 'GET', endStream = true, authority = 'api.test', extra = [] as Array<[string, string]> } = {}): Buffer {
  const block = headerBlock([[':method', method], [':scheme', 'http'], [':path', path], [':authority', authority], ...extra]);
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), stream, block);
}

export function rst(stream: number, code: number = ERROR.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, stream, p);
}

export function settings(pairs: Array<[number, number]> = []): Buffer {
  const p = Buffer.alloc(6 * pairs.length);
  pairs.forEach(([id, v], i) => { p.writeUInt16BE(id, 6 * i); p.writeUInt32BE(v, 6 * i + 2); });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

export interface Frame { type: number; flags: number; stream: number; payload: Buffer }

/** A connection that has sent the preface and its SETTINGS, collecting the server's frames. */
export class RawH2 {
  readonly frames: Frame[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => {});
  }

  static connect(port: number): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        const c = new RawH2(s);
        s.write(Buffer.concat([PREFACE, settings()]));
        resolve(c);
      });
      s.once('error', reject);
    });
  }

  private parse(): void {
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      // Acknowledge the server's SETTINGS so that they apply.
      if (f.type === FRAME.SETTINGS && !(f.flags & FLAG.ACK) && !this.closed) this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      this.frames.push(f);
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Writes bytes; false once the connection is gone. Waits for the socket to drain (bounded). */
  async write(bytes: Buffer, ms = 5_000): Promise<boolean> {
    if (this.closed || this.socket.destroyed) return false;
    if (this.socket.write(bytes)) return true;
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(!this.closed), ms);
      this.socket.once('drain', () => { clearTimeout(t); resolve(true); });
      this.socket.once('close', () => { clearTimeout(t); resolve(false); });
    });
  }

  /** Waits until `check` holds or the connection closes, at most `ms`; answers whether it held. */
  async until(check: (frames: Frame[]) => boolean, ms = 10_000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!check(this.frames)) {
      if (this.closed || Date.now() > end) return check(this.frames);
      await new Promise<void>((r) => { const t = setTimeout(r, Math.min(100, Math.max(1, end - Date.now()))); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
    return true;
  }

  goaway(): { code: number } | undefined {
    const g = this.frames.find((f) => f.type === FRAME.GOAWAY);
    return g ? { code: g.payload.readUInt32BE(4) } : undefined;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The SETTINGS the server sent first, by identifier. */
export function serverSettings(frames: Frame[]): Map<number, number> {
  const f = frames.find((x) => x.type === FRAME.SETTINGS && !(x.flags & FLAG.ACK));
  const out = new Map<number, number>();
  for (let i = 0; f && i + 6 <= f.payload.length; i += 6) out.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
  return out;
}
