import { Type, clock, counter, defineFilter, log, respond, shared } from '@ambit/filter-sdk';
import type { FilterContext, HttpRequest } from '@ambit/filter-sdk';

/**
 * Local rate limiting with token buckets, like Envoy's `local_ratelimit`: a bucket holds
 * at most `maxTokens`; every `fillIntervalMs` it gets `tokensPerFill` back; a request
 * takes one token or is answered `429` (with `retry-after` and `x-ratelimit-*`
 * headers) without reaching the upstream.
 *
 * One bucket per key: `key.by` = `global` (one bucket for all), `source` (the source's
 * SPIFFE identity, else its address), `header` (the value of `key.header`; requests
 * without it are not limited) or `path` (without the query string). `overrides` give
 * some key values their own bucket sizes.
 *
 * Buckets live in the binding's shared storage, so every filter thread of the node
 * proxy takes from the same bucket; a compare-and-set loop keeps a take atomic. The
 * bucket is `"~<full again at ms>:<tokens>:<last fill ms>"`: the leading time tells the
 * table when the entry may give its slot to another key (a bucket that is full again is
 * the same as no bucket). A bucket that is not full again is never evicted, so no choice
 * of keys by a client can bring a drained bucket back full. A new key that finds the
 * table full (the binding's `maxKeys`) is limited (fail closed) and counted `table_full`.
 */

interface Bucket {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
}

interface Config extends Bucket {
  key: { by: 'global' | 'source' | 'header' | 'path'; header?: string };
  overrides: Array<Bucket & { value: string }>;
  statusCode: number;
  rateLimitHeaders: 'denied' | 'all' | 'none';
}

const BucketFields = {
  maxTokens: Type.Integer({ minimum: 1, description: 'Bucket size: the burst allowed.' }),
  tokensPerFill: Type.Integer({ minimum: 1, description: 'Tokens added at every fill.' }),
  fillIntervalMs: Type.Integer({ minimum: 1, description: 'Time between fills.' }),
};

/** The key of a request's bucket, or undefined when the request is not limited. */
function keyOf(req: { path: string; headers: { get(n: string): string | undefined } }, ctx: FilterContext<Config>): string | undefined {
  const k = ctx.config.key;
  switch (k.by) {
    case 'global': return '';
    case 'source': return ctx.source.identity ?? ctx.source.address;
    case 'header': return req.headers.get(k.header!);
    case 'path': {
      const q = req.path.indexOf('?');
      return q < 0 ? req.path : req.path.slice(0, q);
    }
  }
}

/** A storage key: short keys as they are, long ones hashed (FNV-1a 64 as two halves). */
function storageKey(value: string): string {
  if (value.length <= 96) return `b:${value}`;
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  return `h:${h1.toString(16)}${h2.toString(16)}:${value.length}`;
}

interface Take {
  allowed: boolean;
  remaining: number;
  /** Milliseconds until the next fill. */
  resetMs: number;
}

/** A bucket's stored form: when it is full again (the table may reuse its slot after that), tokens, last fill. */
function stored(b: Bucket, tokens: number, last: number): string {
  const fullAt = tokens >= b.maxTokens ? last : last + Math.ceil((b.maxTokens - tokens) / b.tokensPerFill) * b.fillIntervalMs;
  return `~${fullAt}:${tokens}:${last}`;
}

/** Tokens and last fill of a stored bucket (`~<full at>:<tokens>:<last>`). */
function parse(value: string): [string | undefined, string | undefined] {
  const parts = value.split(':');
  return [parts[parts.length - 2], parts[parts.length - 1]];
}

/** Takes one token from the bucket at `key` (atomically across threads); undefined when the table has no room for a new key. */
function take(key: string, b: Bucket, now: number): Take | undefined {
  for (let tries = 0; tries < 64; tries++) {
    const current = shared.get(key);
    const [next, result] = step(current?.value, b, now);
    if (next === undefined || shared.compareAndSet(key, next, current?.version ?? 0)) return result;
    // Lost a race, or (a new key) the table is full: absent after a failed insert means full.
    if (current === undefined && shared.get(key) === undefined) return undefined;
  }
  throw new Error(`rate limit bucket ${key}: still contended after 64 tries`);
}

/** The bucket after one take: what to store (undefined: nothing changed) and the answer. */
function step(current: string | undefined, b: Bucket, now: number): [string | undefined, Take] {
  {
    let tokens = b.maxTokens;
    let last = now;
    if (current !== undefined) {
      const [t, l] = parse(current);
      tokens = Math.min(b.maxTokens, Number(t));
      last = Number(l);
      if (!Number.isFinite(tokens) || !Number.isFinite(last)) { tokens = b.maxTokens; last = now; }
      // Another thread, whose clock read came a moment later, may have written a later
      // fill time: that is no reason to refill (nor to reset), just no fill yet.
      const fills = last > now ? 0 : Math.floor((now - last) / b.fillIntervalMs);
      if (fills > 0) {
        tokens = Math.min(b.maxTokens, tokens + fills * b.tokensPerFill);
        last += fills * b.fillIntervalMs;
      }
    }
    const resetMs = Math.max(1, Math.min(b.fillIntervalMs, last + b.fillIntervalMs - now));
    if (tokens >= 1) return [stored(b, tokens - 1, last), { allowed: true, remaining: tokens - 1, resetMs }];
    // Nothing to take: store only if a fill (or a new bucket) changed it.
    const next = stored(b, tokens, last);
    return [current === undefined || next !== current ? next : undefined, { allowed: false, remaining: 0, resetMs }];
  }
}

function bucketFor(config: Config, key: string): Bucket {
  return config.overrides.find((o) => o.value === key) ?? config;
}

function headers(b: Bucket, t: Take): Record<string, string> {
  return {
    'x-ratelimit-limit': String(b.maxTokens),
    'x-ratelimit-remaining': String(t.remaining),
    'x-ratelimit-reset': String(Math.ceil(t.resetMs / 1000)),
  };
}

export default defineFilter({
  name: 'ratelimit',
  capabilities: ['shared', 'clock', 'counters', 'log'],
  config: Type.Object(
    {
      ...BucketFields,
      key: Type.Object(
        {
          by: Type.Union([Type.Literal('global'), Type.Literal('source'), Type.Literal('header'), Type.Literal('path')], { default: 'global' }),
          header: Type.Optional(Type.String({ minLength: 1, description: 'With by: header, the header whose value is the key.' })),
        },
        { additionalProperties: false, default: {} },
      ),
      overrides: Type.Array(
        Type.Object({ value: Type.String({ description: 'A key value (an identity, a header value, a path).' }), ...BucketFields }, { additionalProperties: false }),
        { default: [], description: 'Buckets of their own for some key values.' },
      ),
      statusCode: Type.Integer({ minimum: 400, maximum: 599, default: 429, description: 'Status of a limited request. Default 429.' }),
      rateLimitHeaders: Type.Union([Type.Literal('denied'), Type.Literal('all'), Type.Literal('none')], {
        default: 'denied',
        description: 'Where to send x-ratelimit-limit/remaining/reset: on limited answers only (default), on every response, or never.',
      }),
    },
    { additionalProperties: false },
  ),

  setup(config: Config) {
    if (config.key.by === 'header' && !config.key.header) throw new Error('key: by header needs key.header');
    if (config.key.by !== 'header' && config.key.header) throw new Error(`key: header is only for by: header (by is ${config.key.by})`);
  },

  onRequest(req: HttpRequest, ctx) {
    const key = keyOf(req, ctx);
    if (key === undefined) return;
    const b = bucketFor(ctx.config, key);
    const t = take(storageKey(key), b, clock.now());
    if (t?.allowed) {
      counter('allowed');
      return;
    }
    counter('limited');
    if (!t) {
      // No room for another key: fail closed, never by pushing out someone's drained bucket.
      counter('table_full');
      log.warn(`rate limit table full: ${ctx.config.key.by} ${key.slice(0, 64)} limited (raise the binding's maxKeys)`);
      return respond(ctx.config.statusCode, 'local rate limit exceeded\n', { 'content-type': 'text/plain', 'retry-after': String(Math.ceil(b.fillIntervalMs / 1000)) });
    }
    log.debug(`rate limited ${ctx.config.key.by}${key ? ` ${key}` : ''}: ${b.maxTokens} per ${b.fillIntervalMs} ms`);
    const extra: Record<string, string> = { 'content-type': 'text/plain', 'retry-after': String(Math.ceil(t.resetMs / 1000)) };
    if (ctx.config.rateLimitHeaders !== 'none') Object.assign(extra, headers(b, t));
    return respond(ctx.config.statusCode, 'local rate limit exceeded\n', extra);
  },

  onResponse(res, ctx) {
    if (ctx.config.rateLimitHeaders !== 'all' || res.headers.has('x-ratelimit-limit')) return;
    const key = keyOf(ctx.request, ctx);
    if (key === undefined) return;
    const b = bucketFor(ctx.config, key);
    const entry = shared.get(storageKey(key));
    const [t, l] = parse(entry?.value ?? `${b.maxTokens}:${clock.now()}`);
    const now = clock.now();
    const resetMs = Math.max(1, Number(l) + b.fillIntervalMs - now);
    for (const [k, v] of Object.entries(headers(b, { allowed: true, remaining: Math.max(0, Math.floor(Number(t))), resetMs }))) res.headers.set(k, v);
  },
});
