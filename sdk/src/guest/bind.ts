import type * as abi from '../abi/types.js';
import type { FilterDefinition, Respond, ResponseContext } from './public-types.js';
import { RequestView, ResponseView, readonlyRequest, toConnection, toContext } from './messages.js';

const PROCEED_NONE: abi.RequestAction = { tag: 'proceed', val: [] };

function localResponse(r: Respond): abi.LocalResponse {
  return { status: r.status, body: r.body, headers: r.headers.map(([k, v]) => [k, v]) };
}

function verdictKind(v: unknown): string | undefined {
  return v !== null && typeof v === 'object' && 'kind' in v ? String((v as { kind: unknown }).kind) : undefined;
}

function wrongVerdict(phase: string, v: unknown, allowed: string): Error {
  return new TypeError(`${phase} returned ${JSON.stringify(v)}; expected nothing or ${allowed}`);
}

/**
 * @internal Adapts a {@link FilterDefinition} to the `handler` interface of the
 * `ambit:filter` world. The generated component entry calls it; filter authors don't.
 */
export function bindFilter<C>(def: FilterDefinition<C>, fallbackName: string, host?: Pick<abi.HostImports, 'reportError' | 'upstreamError'>): abi.Handler {
  const handler = bindHandlers(def, fallbackName, host);
  if (!host) return handler;
  // An uncaught exception traps the call; say why first, so the host can report it.
  const guard = <A extends unknown[], R>(fn: (...a: A) => R) => (...a: A): R => {
    try {
      return fn(...a);
    } catch (e) {
      try {
        host.reportError(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
      } catch {
        // reporting is best effort
      }
      throw e;
    }
  };
  return {
    configure: handler.configure,
    onConnection: guard(handler.onConnection),
    onRequestHeaders: guard(handler.onRequestHeaders),
    onResponseHeaders: guard(handler.onResponseHeaders),
  };
}

function bindHandlers<C>(def: FilterDefinition<C>, fallbackName: string, host?: Pick<abi.HostImports, 'upstreamError'>): abi.Handler {
  let config = undefined as C;
  const info: abi.FilterInfo = {
    name: def.name ?? fallbackName,
    phases: {
      connection: typeof def.onConnection === 'function',
      requestHeaders: typeof def.onRequest === 'function',
      responseHeaders: typeof def.onResponse === 'function',
      requestBody: false,
      responseBody: false,
    },
  };
  return {
    configure(json) {
      try {
        config = JSON.parse(json) as C;
        def.setup?.(config);
        return { tag: 'ok', val: info };
      } catch (e) {
        return { tag: 'invalid', val: e instanceof Error ? e.message : String(e) };
      }
    },
    onConnection(conn) {
      if (!def.onConnection) return { tag: 'allow' };
      const v = def.onConnection(toConnection(conn), toContext(conn.context, config));
      if (v === undefined || v === null) return { tag: 'allow' };
      if (verdictKind(v) === 'deny') return { tag: 'deny', val: v.reason };
      throw wrongVerdict('onConnection', v, 'deny(reason)');
    },
    onRequestHeaders(ctx, head) {
      if (!def.onRequest) return PROCEED_NONE;
      const req = new RequestView(head);
      const v = def.onRequest(req, toContext(ctx, config));
      if (v === undefined || v === null) return { tag: 'proceed', val: req.ops };
      if (verdictKind(v) === 'respond') return { tag: 'respond', val: localResponse(v) };
      throw wrongVerdict('onRequest', v, 'respond(...)');
    },
    onResponseHeaders(ctx, reqHead, head) {
      if (!def.onResponse) return PROCEED_NONE;
      const res = new ResponseView(head);
      const rctx = { ...toContext(ctx, config), request: readonlyRequest(reqHead) } as ResponseContext<C>;
      // Asked of the host only when read.
      Object.defineProperty(rctx, 'upstreamError', { enumerable: true, get: () => host?.upstreamError?.() ?? undefined });
      const v = def.onResponse(res, rctx);
      if (v === undefined || v === null) return { tag: 'proceed', val: res.ops };
      switch (verdictKind(v)) {
        case 'respond': return { tag: 'respond', val: localResponse(v as Respond) };
        case 'retry': {
          const r = v as { delayMs: number; reason: string };
          return { tag: 'retry', val: { delayMs: r.delayMs >>> 0, reason: r.reason } };
        }
        default: throw wrongVerdict('onResponse', v, 'respond(...) or retry(...)');
      }
    },
  };
}
