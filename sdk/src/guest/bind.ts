import type { FilterDefinition, Respond } from './public-types.js';
import type { EngineHandler } from './natives.js';
import { natives } from './natives.js';
import { RequestView, ResponseView, connectionView, contextView, responseContextView, useNatives } from './messages.js';
import { useHeaderNatives } from './headers.js';

/** Bits of the world's `phases` flags. */
const CONNECTION = 1;
const REQUEST_HEADERS = 2;
const RESPONSE_HEADERS = 4;

function verdictKind(v: unknown): string | undefined {
  return v !== null && typeof v === 'object' && 'kind' in v ? String((v as { kind: unknown }).kind) : undefined;
}

function wrongVerdict(phase: string, v: unknown, allowed: string): Error {
  let shown: string;
  try {
    shown = JSON.stringify(v) ?? String(v);
  } catch {
    shown = String(v);
  }
  return new TypeError(`${phase} returned ${shown}; expected nothing or ${allowed}`);
}

/**
 * @internal Adapts a {@link FilterDefinition} to what the engine calls: the handler
 * object of the `ambit:filter` world, with resource handles as numbers. The build's
 * generated entry installs it as `globalThis.__ambitHandler`; filter authors don't.
 *
 * An exception thrown here reaches the engine, which reports it with its stack and
 * traps the call: the host applies the binding's failure policy.
 */
export function bindFilter<C>(def: FilterDefinition<C>, fallbackName: string): EngineHandler {
  const n = natives();
  useNatives(n);
  useHeaderNatives(n);
  let config = undefined as C;
  const phases = (def.onConnection ? CONNECTION : 0) | (def.onRequest ? REQUEST_HEADERS : 0) | (def.onResponse ? RESPONSE_HEADERS : 0);
  const name = def.name ?? fallbackName;
  return {
    configure(json) {
      try {
        config = JSON.parse(json) as C;
        def.setup?.(config);
        return { name, phases };
      } catch (e) {
        return { invalid: e instanceof Error ? e.message : String(e) };
      }
    },
    onConnection(ctx) {
      if (!def.onConnection) return undefined;
      const v = def.onConnection(connectionView(ctx), contextView(ctx, config));
      if (v === undefined || v === null) return undefined;
      if (verdictKind(v) === 'deny') return v.reason;
      throw wrongVerdict('onConnection', v, 'deny(reason)');
    },
    onRequest(ctx, req) {
      if (!def.onRequest) return undefined;
      const v = def.onRequest(new RequestView(req), contextView(ctx, config));
      if (v === undefined || v === null) return undefined;
      if (verdictKind(v) === 'respond') return v as Respond;
      throw wrongVerdict('onRequest', v, 'respond(...)');
    },
    onResponse(ctx, req, res) {
      if (!def.onResponse) return undefined;
      const v = def.onResponse(new ResponseView(res), responseContextView(ctx, req, config));
      if (v === undefined || v === null) return undefined;
      const kind = verdictKind(v);
      if (kind === 'respond' || kind === 'retry') return v;
      throw wrongVerdict('onResponse', v, 'respond(...) or retry(...)');
    },
  };
}
