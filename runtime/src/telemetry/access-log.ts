/**
 * The access log: one JSON line per request and per connection, written by pino to an
 * asynchronous, buffered destination (stdout or a file). Field names follow Envoy's and
 * Istio's JSON access log (`start_time`, `response_code`, `bytes_received`, `duration`,
 * `upstream_host`, `request_id`, …), with Ambit's own (`local_reply`, `attempts`,
 * `upstream_error`, the workloads and identities of both ends). A value the proxy does
 * not have is `null`, as in Envoy's JSON format. Every line starts with `"log":"access"`
 * and has `type` `request` or `connection`.
 *
 * Lines are buffered (32 KiB) and written at the latest a second after they were logged,
 * like Envoy's `access_log_flush_interval`. `flush()` writes the rest and resolves when
 * it is on disk (or in the pipe); pino also writes what is left, synchronously, on
 * `process.exit`.
 */
import pino from 'pino';
import type { ConnectionRecord, RequestRecord } from './types.js';

export type AccessLogDestination = 'stdout' | 'off' | { file: string };

/** How long a logged line may sit in the buffer. */
export const FLUSH_INTERVAL_MS = 1000;
/** Bytes gathered before a write (Envoy buffers 64 KiB). */
export const BUFFER_BYTES = 32 * 1024;
/** How long `flush()` waits for a destination that does not take the lines. */
export const FLUSH_TIMEOUT_MS = 5000;
/** Bytes held while the destination cannot keep up; past it, lines are dropped. */
export const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * A buffered, asynchronous pino destination with a periodic flush. Several loggers may
 * share one (the operational log and the access log both on stdout), which keeps their
 * lines whole: two streams on one descriptor could cut each other's writes.
 */
export interface Sink {
  readonly stream: SonicBoom;
  /** For pino's `hooks.streamWrite`: marks the sink as having unflushed lines. */
  readonly markDirty: (line: string) => string;
  /** Starts writing what is buffered now, without waiting. */
  kick(): void;
  /** Writes everything buffered; resolves once written, or after `timeoutMs`. Never rejects. */
  flush(timeoutMs?: number): Promise<void>;
  /** Flushes, then closes the descriptor (stdout is left open). */
  close(): Promise<void>;
}

/** fsync is not possible on pipes and terminals; that is no failure of the flush. */
const FSYNC_NOT_SUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EROFS', 'ENOSYS']);

export function createSink(dest: number | string, onError: (err: Error) => void): Sink {
  const stream = pino.destination({
    dest, sync: false, mkdir: true,
    minLength: BUFFER_BYTES, maxWrite: 2 * BUFFER_BYTES, maxLength: MAX_BUFFERED_BYTES,
  });
  let dirty = false;
  let closed = false;
  stream.once('close', () => {
    closed = true;
  });
  // Each kind of failure is told once: a full disk must not turn into a log storm.
  const reported = new Set<string>();
  const report = (err: NodeJS.ErrnoException, kind = err.code ?? err.message): void => {
    if (reported.has(kind)) return;
    reported.add(kind);
    onError(err);
  };
  stream.on('error', (err: NodeJS.ErrnoException) => report(err));
  stream.on('drop', () => {
    report(new Error(`destination too slow: more than ${MAX_BUFFERED_BYTES} bytes waiting, dropping lines`), 'drop');
  });
  const timer = setInterval(() => {
    if (dirty) void sink.flush();
  }, FLUSH_INTERVAL_MS);
  timer.unref();

  /** One round of sonic-boom's flush: resolves on its 'drain' (or error, or timeout). */
  const flushOnce = (timeoutMs: number) => new Promise<void>((resolve) => {
    const t = setTimeout(resolve, timeoutMs);
    const done = (err?: NodeJS.ErrnoException | null) => {
      clearTimeout(t);
      if (err && !FSYNC_NOT_SUPPORTED.has(err.code ?? '') && err.message !== 'SonicBoom destroyed') report(err);
      resolve();
    };
    try {
      stream.flush(done);
    } catch (err) {
      done(err as Error);
    }
  });

  /**
   * sonic-boom's `flush(cb)` only waits for the write in flight: what was buffered
   * behind it, if under `minLength`, is still in memory when the callback runs. So
   * flush again until its buffer is empty (`_len`, the count of bytes not yet written).
   */
  const flushAll = async (timeoutMs: number): Promise<void> => {
    const until = Date.now() + timeoutMs;
    for (let round = 0; !closed; round++) {
      const left = until - Date.now();
      if (left <= 0) {
        report(new Error(`flush timed out after ${timeoutMs} ms: the destination does not take lines`), 'timeout');
        return;
      }
      await flushOnce(left);
      const pending = (stream as unknown as { _len?: unknown })._len;
      // Unknown internals (another sonic-boom): two rounds cover the write in flight.
      if (typeof pending === 'number' ? pending <= 0 : round >= 1) return;
    }
  };

  let flushing: Promise<void> | undefined;

  const sink: Sink = {
    stream,
    markDirty(line) {
      dirty = true;
      return line;
    },
    kick() {
      if (dirty) void sink.flush();
    },
    flush(timeoutMs = FLUSH_TIMEOUT_MS) {
      dirty = false;
      if (closed) return Promise.resolve();
      // One flush at a time: it runs until the buffer is empty, lines logged meanwhile included.
      flushing ??= flushAll(timeoutMs).finally(() => {
        flushing = undefined;
      });
      return flushing;
    },
    async close() {
      if (closed) return;
      await sink.flush();
      clearInterval(timer);
      if (closed || dest === 1 || dest === 2) {
        closed = true;
        return;
      }
      closed = true;
      await new Promise<void>((resolve) => {
        stream.once('close', () => resolve());
        stream.once('error', () => resolve());
        stream.end();
      });
    },
  };
  return sink;
}

const ACCESS_MARK = { log: 'access' } as const;

export interface AccessLog {
  request(r: RequestRecord): void;
  connection(r: ConnectionRecord): void;
}

function hostPort(a: { address: string; port: number } | undefined): string | null {
  if (!a) return null;
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function startTime(durationMs: number): string {
  const d = durationMs > 0 && durationMs !== Infinity ? durationMs : 0;
  return new Date(Date.now() - d).toISOString();
}

/** Milliseconds with microsecond precision. */
function ms(n: number): number | null {
  return Number.isFinite(n) ? Math.round(n * 1000) / 1000 : null;
}

/** The line written for a request. */
export function requestLine(r: RequestRecord): Record<string, unknown> {
  return {
    type: 'request',
    start_time: startTime(r.durationMs),
    direction: r.direction,
    method: r.method,
    path: r.path,
    protocol: r.protocol,
    response_code: r.status,
    grpc_status: r.grpcStatus ?? null,
    local_reply: r.localReply?.filter ?? null,
    local_reply_reason: r.localReply?.reason ?? null,
    bytes_received: r.bytesReceived,
    bytes_sent: r.bytesSent,
    duration: ms(r.durationMs),
    upstream_host: hostPort(r.upstream),
    upstream_cluster: r.service ?? null,
    upstream_error: r.upstreamError ?? null,
    attempts: r.attempts,
    request_id: r.requestId || null,
    authority: r.authority,
    user_agent: r.userAgent ?? null,
    ...endpoints(r),
  };
}

/** Both ends of a request or connection, in the access log's field names. */
function endpoints(r: RequestRecord | ConnectionRecord): Record<string, unknown> {
  return {
    downstream_remote_address: hostPort(r.source),
    downstream_local_address: hostPort(r.destination),
    source_workload: r.source.workload ?? null,
    source_namespace: r.source.namespace ?? null,
    source_principal: r.source.identity ?? null,
    destination_workload: r.destination.workload ?? null,
    destination_namespace: r.destination.namespace ?? null,
    destination_principal: r.destination.identity ?? null,
    destination_service: r.service ?? null,
  };
}

/** The line written for a connection. */
export function connectionLine(r: ConnectionRecord): Record<string, unknown> {
  return {
    type: 'connection',
    start_time: startTime(r.durationMs),
    direction: r.direction,
    mode: r.mode,
    bytes_received: r.bytesReceived,
    bytes_sent: r.bytesSent,
    duration: ms(r.durationMs),
    upstream_host: hostPort(r.upstream),
    upstream_cluster: r.service ?? null,
    denied: r.denied?.filter ?? null,
    denied_reason: r.denied?.reason ?? null,
    error: r.error ?? null,
    ...endpoints(r),
  };
}

/**
 * A pino logger for access-log objects: no level, time, pid or host, but a leading
 * `"log":"access"` (in the level's place) that tells them from operational lines when
 * both go to stdout.
 */
export function accessLogger(sink: Sink): pino.Logger {
  return pino(
    {
      base: null,
      timestamp: false,
      formatters: { level: () => ACCESS_MARK },
      hooks: { streamWrite: sink.markDirty },
    },
    sink.stream,
  );
}

export function createAccessLog(sink: Sink): AccessLog {
  const logger = accessLogger(sink);
  return {
    request(r) {
      logger.info(requestLine(r));
    },
    connection(r) {
      logger.info(connectionLine(r));
    },
  };
}
