import type { Static, TSchema } from '@sinclair/typebox';
import type { Deny, FilterDefinition, Respond, Retry } from './public-types.js';

/**
 * Declares a filter. With a TypeBox `config` schema the handlers get a typed
 * `ctx.config`:
 *
 * ```ts
 * export default defineFilter({
 *   config: Type.Object({ header: Type.String() }),
 *   onRequest(req, ctx) { req.headers.set(ctx.config.header, 'yes'); },
 * });
 * ```
 */
export function defineFilter<S extends TSchema>(def: FilterDefinition<Static<S>> & { config: S }): FilterDefinition<Static<S>>;
export function defineFilter<C = Record<string, never>>(def: FilterDefinition<C>): FilterDefinition<C>;
export function defineFilter<C>(def: FilterDefinition<C>): FilterDefinition<C> {
  if (def === null || typeof def !== 'object') throw new TypeError('defineFilter expects an object');
  for (const key of ['onConnection', 'onRequest', 'onResponse', 'setup'] as const) {
    const fn = def[key];
    if (fn !== undefined && typeof fn !== 'function') throw new TypeError(`defineFilter: ${key} must be a function`);
  }
  if (!def.onConnection && !def.onRequest && !def.onResponse) {
    throw new TypeError('defineFilter: a filter needs at least one of onConnection, onRequest, onResponse');
  }
  return def;
}

/** Answers the request locally instead of forwarding it. */
export function respond(status: number, body = '', headers: Record<string, string> | Array<[string, string]> = {}): Respond {
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new RangeError(`respond: status must be an integer from 200 to 599, got ${status}`);
  }
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  return { kind: 'respond', status, body: String(body), headers: list.map(([k, v]) => [k.toLowerCase(), String(v)] as const) };
}

/** Closes the connection (connection phase); `reason` goes to the access log. */
export function deny(reason: string): Deny {
  return { kind: 'deny', reason: String(reason) };
}

/** Discards the upstream response and tries the request again (response phase). */
export function retry(options: { delayMs?: number; reason?: string } = {}): Retry {
  const delayMs = Math.max(0, Math.floor(options.delayMs ?? 0));
  return { kind: 'retry', delayMs, reason: options.reason ?? 'filter asked for a retry' };
}
