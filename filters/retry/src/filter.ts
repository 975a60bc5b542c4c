import { Type, clock, counter, defineFilter, log, random, retry, traffic } from '@ambit/filter-sdk';
import type { HttpResponse, ResponseContext } from '@ambit/filter-sdk';

/**
 * Retries, with the semantics of Istio's `HTTPRetry` and Envoy's retry policy:
 *
 * - `attempts`: retries after the first try (the proxy's `limits.maxAttempts` caps the
 *   total); `perTryTimeoutMs`: each attempt's time until response headers (a timeout
 *   is a 504 `timeout`, retried under `5xx` / `gateway-error`).
 * - `retryOn`: `5xx`, `gateway-error` (502/503/504), `reset`, `connect-failure`,
 *   `retriable-4xx` (409), `retriable-status-codes` (`retriableStatusCodes`), and gRPC
 *   `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`
 *   (from a trailers-only `grpc-status`). `reset` and `connect-failure` come from the
 *   proxy (`ctx.upstreamError`), never from a header an upstream could send.
 * - Backoff: full jitter, `random(0, min(maxMs, baseMs × 2^(retry-1)))`.
 * - `Retry-After` (seconds or an HTTP date) on a retriable response is honoured: the
 *   retry waits that long; longer than `retryAfter.maxMs` → no retry.
 * - Only idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) are retried unless
 *   `retryNonIdempotent`; a connect failure is retried for any method (nothing reached
 *   the upstream).
 * - Budget: retries in flight to the service stay under `budget.percent` of the
 *   requests in flight (never under `budget.minRetryConcurrency`), so retries cannot
 *   multiply an outage (Envoy's retry budget).
 */

const GRPC: Record<string, number> = { cancelled: 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, internal: 13, unavailable: 14 };
const CONDITIONS = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'retriable-status-codes', ...Object.keys(GRPC)] as const;
type Condition = (typeof CONDITIONS)[number];
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

interface Config {
  attempts: number;
  perTryTimeoutMs: number;
  retryOn: Condition[];
  retriableStatusCodes: number[];
  backoff: { baseMs: number; maxMs: number };
  retryAfter: { honor: boolean; maxMs: number };
  retryNonIdempotent: boolean;
  budget: { percent: number; minRetryConcurrency: number } | null;
}

/** The retryOn condition the response meets, or undefined. */
/** `retryOn` as a set, made once in `setup`. */
let on = new Set<Condition>();

function matchCondition(res: HttpResponse, upstreamError: string | undefined, c: Config): Condition | undefined {
  if (upstreamError === 'connect-failure' || upstreamError === 'connect-timeout' || upstreamError === 'no-healthy-upstream') {
    if (on.has('connect-failure')) return 'connect-failure';
  }
  if (upstreamError === 'reset' || upstreamError === 'protocol-error') {
    if (on.has('reset')) return 'reset';
  }
  const s = res.status;
  if (on.has('5xx') && s >= 500) return '5xx';
  if (on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return 'gateway-error';
  if (on.has('retriable-4xx') && s === 409) return 'retriable-4xx';
  if (on.has('retriable-status-codes') && c.retriableStatusCodes.includes(s)) return 'retriable-status-codes';
  const grpc = res.headers.get('grpc-status');
  if (grpc !== undefined) {
    const code = Number(grpc);
    for (const [name, n] of Object.entries(GRPC)) if (code === n && on.has(name as Condition)) return name as Condition;
  }
  return undefined;
}

/** `Retry-After` in milliseconds (delta-seconds or an HTTP date), or undefined. */
function retryAfterMs(value: string | undefined, now: () => number): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now());
}

function backoffMs(retryNumber: number, b: Config['backoff']): number {
  const cap = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(30, retryNumber - 1));
  return Math.floor(random() * (cap + 1));
}

function decide(res: HttpResponse, ctx: ResponseContext<Config>) {
  const c = ctx.config;
  const upstreamError = ctx.upstreamError;
  const why = matchCondition(res, upstreamError, c);
  if (!why) return undefined;
  if (ctx.attempt > c.attempts) {
    counter('exhausted');
    return undefined;
  }
  if (!c.retryNonIdempotent && !IDEMPOTENT.has(ctx.request.method) && why !== 'connect-failure') {
    counter('skipped_non_idempotent');
    return undefined;
  }
  if (c.budget) {
    const load = traffic.load();
    // Retries of other requests now in flight (this one counts itself once it retries).
    const others = load.activeRetries - (ctx.attempt > 1 ? 1 : 0);
    const allowed = Math.max(c.budget.minRetryConcurrency, (c.budget.percent / 100) * load.activeRequests);
    if (others + 1 > allowed) {
      counter('budget_exhausted');
      log.warn(`retry budget exhausted for ${ctx.service ?? ctx.route ?? 'destination'}: ${others} retries in flight of ${load.activeRequests} requests (budget ${c.budget.percent}%, min ${c.budget.minRetryConcurrency})`);
      return undefined;
    }
  }
  let delayMs = backoffMs(ctx.attempt, c.backoff);
  if (c.retryAfter.honor) {
    const ra = retryAfterMs(res.headers.get('retry-after'), clock.now);
    if (ra !== undefined) {
      if (ra > c.retryAfter.maxMs) {
        counter('skipped_retry_after');
        return undefined;
      }
      delayMs = Math.max(delayMs, ra);
    }
  }
  counter(`retry_${why}`);
  return retry({ delayMs, reason: `${why}${upstreamError ? ` (${upstreamError})` : ` (status ${res.status})`}, retry ${ctx.attempt} of ${c.attempts}` });
}

export default defineFilter({
  name: 'retry',
  capabilities: ['random', 'traffic', 'counters', 'log', 'clock'],
  config: Type.Object(
    {
      attempts: Type.Integer({ minimum: 0, maximum: 9, default: 2, description: 'Retries after the first try. Default 2 (Istio).' }),
      perTryTimeoutMs: Type.Integer({ minimum: 0, default: 0, description: 'Time each attempt has until response headers; 0: the service\'s own timeout.' }),
      retryOn: Type.Array(Type.Union(CONDITIONS.map((c) => Type.Literal(c))), {
        default: ['connect-failure', 'reset', 'unavailable', 'cancelled', 'retriable-status-codes', 'gateway-error'],
        uniqueItems: true,
        description: 'Conditions that retry. Default: connect-failure, reset, gateway-error, retriable-status-codes and gRPC unavailable, cancelled.',
      }),
      retriableStatusCodes: Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { default: [], description: 'Statuses retried under retriable-status-codes.' }),
      backoff: Type.Object(
        {
          baseMs: Type.Integer({ minimum: 1, default: 25, description: 'Default 25 ms (Envoy).' }),
          maxMs: Type.Integer({ minimum: 1, default: 250, description: 'Default 250 ms (10 × base, Envoy).' }),
        },
        { additionalProperties: false, default: {} },
      ),
      retryAfter: Type.Object(
        {
          honor: Type.Boolean({ default: true }),
          maxMs: Type.Integer({ minimum: 0, default: 10_000, description: 'A longer Retry-After is not waited for: the response goes back. Default 10 s.' }),
        },
        { additionalProperties: false, default: {} },
      ),
      retryNonIdempotent: Type.Boolean({ default: false, description: 'Retry POST and PATCH too (after a connect failure they always are).' }),
      budget: Type.Union([
        Type.Object(
          {
            percent: Type.Number({ minimum: 0, maximum: 100, default: 20, description: 'Retries in flight at most this share of requests in flight. Default 20 (Envoy).' }),
            minRetryConcurrency: Type.Integer({ minimum: 0, default: 3, description: 'Retries always allowed in flight, however few requests. Default 3.' }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ], { default: { percent: 20, minRetryConcurrency: 3 }, description: 'Retry budget; null: none.' }),
    },
    { additionalProperties: false },
  ),

  setup(config: Config) {
    on = new Set(config.retryOn);
    if (config.backoff.maxMs < config.backoff.baseMs) throw new Error(`backoff: maxMs (${config.backoff.maxMs}) is below baseMs (${config.backoff.baseMs})`);
    if (config.retryOn.includes('retriable-status-codes') && config.retriableStatusCodes.length === 0 && config.retryOn.length === 1) {
      throw new Error('retryOn is only retriable-status-codes but retriableStatusCodes is empty: nothing would be retried');
    }
  },

  onRequest(_req, ctx) {
    if (ctx.config.perTryTimeoutMs > 0) traffic.setPerTryTimeout(ctx.config.perTryTimeoutMs);
  },

  onResponse(res, ctx) {
    return decide(res, ctx);
  },
});
