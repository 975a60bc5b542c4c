/**
 * `@ambit/filter-sdk/testing`: run a built filter in-process from a unit test, with
 * plain objects in and out. No proxy, no cluster.
 *
 * ```ts
 * const f = await loadFilter('.', { config: { header: 'x-hello' } });
 * const r = f.request({ path: '/hi', headers: { accept: '*' } });
 * expect(r.action).toBe('continue');
 * ```
 */
import { applyRequestOps, applyResponseOps } from '../abi/ops.js';
import type * as abi from '../abi/types.js';
import { compileCore, instantiateHandler, loadGlue, prepareComponent } from '../host/component.js';
import { validateConfig } from '../host/config.js';
import { AmbitError, errorMessage } from '../host/errors.js';
import { createHostImports, newCallScope } from '../host/imports.js';
import { freshBudget } from '../host/call-limits.js';
import { SharedTable } from '../host/shared.js';
import { loadFilterArtifact, type FilterManifest } from '../host/package.js';
import { mapFilterStack, readSourceMap } from '../host/source-map.js';

export interface PeerInput {
  identity?: string;
  workload?: string;
  namespace?: string;
  address?: string;
  port?: number;
}

export interface ContextInput {
  direction?: abi.Direction;
  source?: PeerInput;
  destination?: PeerInput;
  service?: string;
  route?: string;
  requestId?: string;
  attempt?: number;
  /** Response phase: why the proxy had no upstream response (`connect-failure`, `reset`, `timeout`, …). */
  upstreamError?: string;
  /** What `traffic.load()` answers (default: nothing in flight). */
  load?: { activeRequests: number; activeRetries: number };
  /** The TLS session the connection arrived on (`ctx.tls`); default plaintext. */
  tls?: { version?: string; cipher?: string; sni?: string };
}

export type HeadersInput = Record<string, string | string[]> | Array<[string, string]>;

export interface RequestInput {
  method?: string;
  scheme?: string;
  authority?: string;
  path?: string;
  headers?: HeadersInput;
}

export interface ResponseInput {
  status?: number;
  headers?: HeadersInput;
}

export type ConnectionInput = ContextInput;

export type ConnectionResult = { action: 'allow' } | { action: 'deny'; reason: string };

export type RequestResult =
  | { action: 'continue'; request: abi.RequestHead; ops: abi.HeaderOp[]; directives: abi.RequestDirectives }
  | { action: 'respond'; response: abi.LocalResponse };

export type ResponseResult =
  | { action: 'continue'; response: abi.ResponseHead; ops: abi.HeaderOp[] }
  | { action: 'respond'; response: abi.LocalResponse }
  | { action: 'retry'; delayMs: number; reason: string };

export interface LoadOptions {
  /** The binding config; validated against the filter's schema like the proxy does. */
  config?: unknown;
  /** Memory cap in 64 KiB pages (default 1024 = 64 MiB). */
  memoryMaxPages?: number;
  /**
   * The shared table (capability `shared`). Default: a new one per loaded filter; pass
   * the same table to several loads to see them share state as the proxy's threads do.
   */
  shared?: SharedTable;
  /** What `random()` returns (a generator): makes percentages deterministic. Default Math.random. */
  random?: () => number;
}

export interface TestFilter {
  readonly name: string;
  readonly manifest: FilterManifest | undefined;
  readonly phases: abi.Phases;
  /** Lines the filter logged, in order. */
  readonly logs: Array<{ level: abi.LogLevel; message: string }>;
  /** Counter totals the filter added to. */
  readonly counters: Map<string, number>;
  /** The filter's shared table. */
  readonly shared: SharedTable;
  connection(input?: ConnectionInput): ConnectionResult;
  request(request?: RequestInput, ctx?: ContextInput): RequestResult;
  /** `request` is the forwarded request the response answers. */
  response(response?: ResponseInput, request?: RequestInput, ctx?: ContextInput): ResponseResult;
}

/** Thrown when the filter traps (throws, runs out of memory, …). The next call gets a fresh instance. */
export class FilterTrapError extends Error {
  constructor(filter: string, phase: string, cause: unknown) {
    super(`filter ${filter} trapped in ${phase}: ${errorMessage(cause)}`, { cause });
    this.name = 'FilterTrapError';
  }
}

export function toHeaders(h: HeadersInput | undefined): abi.Headers {
  if (!h) return [];
  if (Array.isArray(h)) return h.map(([k, v]) => [k.toLowerCase(), v]);
  const out: abi.Headers = [];
  for (const [k, v] of Object.entries(h)) for (const one of Array.isArray(v) ? v : [v]) out.push([k.toLowerCase(), one]);
  return out;
}

function peer(p: PeerInput | undefined, port: number): abi.Peer {
  return { identity: p?.identity, workload: p?.workload, namespace: p?.namespace, address: p?.address ?? '127.0.0.1', port: p?.port ?? port };
}

let seq = 0;
export { SharedTable };

function toTls(t: ContextInput['tls']): abi.TlsInfo | undefined {
  return t ? { version: t.version ?? 'TLSv1.3', cipher: t.cipher ?? 'TLS_AES_128_GCM_SHA256', sni: t.sni } : undefined;
}

export function toContext(c: ContextInput = {}): abi.Context {
  return {
    tls: toTls(c.tls),
    direction: c.direction ?? 'inbound',
    source: peer(c.source, 40000),
    destination: peer(c.destination, 8080),
    service: c.service,
    route: c.route,
    requestId: c.requestId ?? `test-${++seq}`,
    attempt: c.attempt ?? 1,
  };
}

export function toRequest(r: RequestInput = {}): abi.RequestHead {
  return { method: r.method ?? 'GET', scheme: r.scheme ?? 'http', authority: r.authority ?? 'example.test', path: r.path ?? '/', headers: toHeaders(r.headers) };
}

/** Loads a filter package folder or `.wasm` file, instantiates it and applies `config`. */
export async function loadFilter(ref: string, options: LoadOptions = {}): Promise<TestFilter> {
  const artifact = await loadFilterArtifact(ref);
  const config = validateConfig(artifact.schema, options.config, artifact.name);
  const prepared = await prepareComponent(artifact.wasm, { label: artifact.origin });
  const modules = await compileCore(prepared, options.memoryMaxPages ?? 1024, artifact.name);
  const instantiate = await loadGlue(prepared.gluePath);
  const logs: TestFilter['logs'] = [];
  const counters = new Map<string, number>();
  let reported: string | undefined;
  const shared = options.shared ?? SharedTable.create();
  const scope = newCallScope();
  const host = createHostImports(artifact.name, artifact.capabilities, {
    log: (_f, level, message) => logs.push({ level, message }),
    counter: (_f, name, delta) => counters.set(name, (counters.get(name) ?? 0) + delta),
    reportError: (_f, message) => { reported = message; },
  }, { shared, scope, random: options.random });
  const enter = (phase: abi.PhaseName, ctx: ContextInput | undefined) => {
    scope.phase = phase;
    scope.directives = {};
    scope.facts = { upstreamError: ctx?.upstreamError, load: ctx?.load };
    scope.budget = freshBudget();
  };
  const configJson = JSON.stringify(config);
  let phases: abi.Phases | undefined;
  const fresh = (): abi.Handler => {
    const h = instantiateHandler(instantiate, modules, host, artifact.name);
    const r = h.configure(configJson);
    if (r.tag === 'invalid') throw new AmbitError('AMBIT_ERR_CONFIG_REJECTED', `filter ${artifact.name} rejected its config: ${r.val}`);
    phases = r.val.phases;
    return h;
  };
  let handler: abi.Handler | undefined = fresh();
  // A trap's stack names the filter's TypeScript lines, as the node proxy logs it.
  const sourceMap = readSourceMap(artifact.wasm);
  const call = <T>(phase: string, fn: (h: abi.Handler) => T): T => {
    handler ??= fresh();
    reported = undefined;
    try {
      return fn(handler);
    } catch (e) {
      handler = undefined;
      throw new FilterTrapError(artifact.name, phase, reported === undefined ? e : new Error(`${mapFilterStack(reported, sourceMap)} (${errorMessage(e)})`, { cause: e }));
    }
  };
  return {
    name: artifact.name,
    manifest: artifact.manifest,
    get phases() { return phases!; },
    logs,
    counters,
    shared,
    connection(input = {}) {
      enter('connection', input);
      const context = toContext(input);
      const conn: abi.Connection = { context, tls: context.tls };
      const r = call('onConnection', (h) => h.onConnection(conn));
      return r.tag === 'allow' ? { action: 'allow' } : { action: 'deny', reason: r.val };
    },
    request(request, ctx) {
      const head = toRequest(request);
      enter('requestHeaders', ctx);
      // The host does not change `head`: it returns the operations, applied here as the proxy does.
      const r = call('onRequest', (h) => h.onRequestHeaders(toContext(ctx), head));
      if (r.tag === 'respond') return { action: 'respond', response: r.val };
      applyRequestOps(head, r.val);
      return { action: 'continue', request: head, ops: r.val, directives: scope.directives };
    },
    response(response, request, ctx) {
      const head: abi.ResponseHead = { status: response?.status ?? 200, headers: toHeaders(response?.headers) };
      enter('responseHeaders', ctx);
      const r = call('onResponse', (h) => h.onResponseHeaders(toContext(ctx), toRequest(request), head));
      if (r.tag === 'respond') return { action: 'respond', response: r.val };
      if (r.tag === 'retry') return { action: 'retry', delayMs: r.val.delayMs, reason: r.val.reason };
      applyResponseOps(head, r.val);
      return { action: 'continue', response: head, ops: r.val };
    },
  };
}
