/**
 * Telemetry of the proxy: Prometheus metrics (`metrics.ts`), the access log
 * (`access-log.ts`) and the operational log, behind the `Telemetry` interface the proxy
 * core calls (`types.ts`).
 *
 * ```ts
 * const telemetry = createTelemetry({ registry: new Registry(), accessLog: 'stdout' });
 * telemetry.reloadResult(true);           // after the initial load and every reload
 * …
 * await telemetry.flush();                // on shutdown, before process.exit
 * ```
 */
import pino from 'pino';
import type { Registry } from 'prom-client';
import { createAccessLog, createSink, FLUSH_TIMEOUT_MS, type AccessLog, type AccessLogDestination, type Sink } from './access-log.js';
import { createMetrics, type AmbitMetrics, type MetricsOptions } from './metrics.js';
import type { Telemetry } from './types.js';

export type { AccessLogDestination } from './access-log.js';
export { connectionLine, requestLine } from './access-log.js';
export {
  createMetrics, FILTER_DURATION_BUCKETS, METRIC_NAMES, REQUEST_DURATION_BUCKETS,
  type AmbitMetrics, type MetricsOptions,
} from './metrics.js';
export type * from './types.js';

export interface TelemetryOptions {
  /** Where the metrics go; create metrics on one registry only once. */
  registry: Registry;
  /** Default `stdout`. */
  accessLog?: AccessLogDestination;
  /** Level of the operational log when Ambit creates it (default `info`). */
  level?: string;
  /**
   * An operational logger of the caller's. Without one, Ambit logs JSON to stdout
   * through the same buffered destination as a `stdout` access log, so the two never
   * cut each other's lines; a logger of the caller's that also writes to stdout has its
   * own descriptor writes, which can interleave with large access-log writes.
   */
  logger?: pino.Logger;
  metrics?: MetricsOptions;
}

export type AmbitTelemetry = Telemetry & {
  /** The operational logger. */
  readonly logger: pino.Logger;
  readonly metrics: AmbitMetrics;
  /** Writes out every buffered log line (access and operational); call on shutdown. */
  flush(): Promise<void>;
  /** A configuration load or reload finished (see `AmbitMetrics.reloadResult`). */
  reloadResult(ok: boolean): void;
  /** Flushes and closes the log files Ambit opened; stdout stays open. */
  close(): Promise<void>;
};

type FilterLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
const FILTER_LEVELS: ReadonlySet<string> = new Set<FilterLevel>(['trace', 'debug', 'info', 'warn', 'error']);

/** Longest filter log message kept; the rest is cut. */
export const MAX_FILTER_LOG_CHARS = 8192;

export function createTelemetry(options: TelemetryOptions): AmbitTelemetry {
  const sinks: Sink[] = [];
  let stdoutSink: Sink | undefined;
  const stdout = (): Sink => {
    if (!stdoutSink) {
      stdoutSink = createSink(1, (err) => report('stdout', err));
      sinks.push(stdoutSink);
    }
    return stdoutSink;
  };

  const ownLogger = !options.logger;
  const logger: pino.Logger = options.logger ?? pino(
    {
      name: 'ambit',
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      hooks: { streamWrite: stdout().markDirty },
    },
    stdout().stream,
  );

  /** A destination failed: tell the operational log, or stderr when that is the one failing. */
  function report(where: string, err: Error): void {
    const line = `ambit: ${where} log destination failed: ${err.message}\n`;
    if (where === 'stdout' && ownLogger) {
      process.stderr.write(line);
      return;
    }
    try {
      logger.error({ err, destination: where }, 'log destination failed');
    } catch {
      process.stderr.write(line);
    }
  }

  const dest = options.accessLog ?? 'stdout';
  let accessLog: AccessLog | undefined;
  if (dest === 'stdout') {
    accessLog = createAccessLog(stdout());
  } else if (dest !== 'off') {
    const file = dest.file;
    const sink = createSink(file, (err) => report(file, err));
    sinks.push(sink);
    accessLog = createAccessLog(sink);
  }

  const metrics = createMetrics(options.registry, {
    ...options.metrics,
    onCounterOverflow: (filter, name) => {
      options.metrics?.onCounterOverflow?.(filter, name);
      logger.warn({ filter, name, limit: options.metrics?.maxCounterNamesPerFilter ?? 100 },
        'filter created too many counter names; further ones are counted as "overflow"');
    },
  });

  const filterLoggers = new Map<string, pino.Logger>();
  const filterLogger = (filter: string): pino.Logger => {
    let l = filterLoggers.get(filter);
    if (!l) filterLoggers.set(filter, (l = logger.child({ filter })));
    return l;
  };

  /** Errors and warnings go out at once rather than at the next periodic flush. */
  const prompt = (): void => {
    if (ownLogger) stdoutSink?.kick();
  };

  async function flush(): Promise<void> {
    await Promise.all(sinks.map((s) => s.flush()));
    if (!ownLogger) {
      // The caller's destination may never call back (a plain stream): wait at most as long as a sink.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FLUSH_TIMEOUT_MS);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        try {
          logger.flush(done);
        } catch {
          done();
        }
      });
    }
  }

  return {
    logger,
    metrics,

    logsRequests: accessLog !== undefined,

    request(r) {
      metrics.request(r);
      accessLog?.request(r);
    },

    requestCell(c) {
      metrics.requestCell(c);
    },

    filterCell(c) {
      metrics.filterCell(c);
    },

    connection(r) {
      metrics.connection(r);
      accessLog?.connection(r);
    },

    filterPhase(phase, outcome) {
      metrics.filterPhase(phase, outcome);
      // Each failure once, with the filter's own words: a trap's exception and its stack,
      // at the TypeScript lines (mapped by the chain), and what the policy made of it.
      for (const f of outcome.failures) {
        filterLogger(f.filter).error({ phase, kind: f.kind, policy: f.policy }, `filter ${f.filter} failed (${f.kind}) in ${phase}, ${f.policy === 'fail-open' ? 'skipped (fail-open)' : 'answered for it (fail-closed)'}: ${f.message}`);
      }
      if (outcome.failures.length > 0) prompt();
    },

    filterCounter(filter, name, delta) {
      metrics.filterCounter(filter, name, delta);
    },

    filterLog(filter, level: FilterLevel, message) {
      // A level the SDK does not define is logged as info rather than lost.
      const lvl: FilterLevel = FILTER_LEVELS.has(level) ? level : 'info';
      const l = filterLogger(filter);
      if (!l.isLevelEnabled(lvl)) return;
      const text = message.length > MAX_FILTER_LOG_CHARS
        ? `${message.slice(0, MAX_FILTER_LOG_CHARS)}… (${message.length - MAX_FILTER_LOG_CHARS} more characters)`
        : message;
      l[lvl](text);
      if (lvl === 'warn' || lvl === 'error') prompt();
    },

    info(msg, fields) {
      if (fields) logger.info(fields, msg);
      else logger.info(msg);
    },

    warn(msg, fields) {
      if (fields) logger.warn(fields, msg);
      else logger.warn(msg);
      prompt();
    },

    error(msg, fields) {
      if (fields) logger.error(fields, msg);
      else logger.error(msg);
      prompt();
    },

    reloadResult(ok) {
      metrics.reloadResult(ok);
    },

    flush,

    async close() {
      await flush();
      await Promise.all(sinks.map((s) => s.close()));
    },
  };
}
