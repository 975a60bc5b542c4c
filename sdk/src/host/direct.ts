/**
 * A direct binding of the ambit:filter@0.2 world on V8: the component's one core module
 * instantiated with host imports written for this world, lifting and lowering its values
 * by the canonical ABI by hand.
 *
 * jco's generated glue is generic: every host call (each header read) goes through its
 * task bookkeeping, tens of microseconds. A component made by `wit-component` from one
 * core module (what `ambit-filter build` and the usual guest toolchains produce) has a
 * main module whose imports and exports carry the world's own names
 * (`ambit:filter/types@0.2.0` `[method]request-head.get`,
 * `ambit:filter/handler@0.2.0#on-request-headers`, `cabi_realloc`, `memory`). When the
 * component has that shape, this binding runs it; otherwise the host uses jco's glue.
 * Both lend the same resource objects (`resources.ts`), so a filter sees the same host.
 *
 * Like wasmtime, this binding traps a call that returns with a lent handle not dropped,
 * a misaligned or out-of-bounds pointer, invalid UTF-8 or an unknown discriminant; and a
 * trapped instance cannot be entered again.
 */
import {
  HANDLER_INTERFACE, HOST_INTERFACE, TYPES_INTERFACE, WORLD_VERSION,
  type ComponentHandler, type ComponentRequestAction, type ComponentResponseAction, type ConfigureResult, type ConnectionAction,
  type ContextResource, type HeadResource, type HostImports, type LocalResponse, type LogLevel, type Peer, type RequestHeadResource,
  type ResponseHeadResource, type TlsInfo,
} from '../abi/types.js';

/** The main core module of a directly bindable component, and the world version it names. */
export interface DirectShape {
  file: string;
  /** e.g. `@0.2.0` */
  version: string;
}

const TYPES_FUNCTIONS = new Set([
  '[method]context.direction', '[method]context.source', '[method]context.destination', '[method]context.source-key',
  '[method]context.destination-key', '[method]context.service', '[method]context.route',
  '[method]context.request-id', '[method]context.attempt', '[method]context.tls', '[resource-drop]context',
  ...['request-head', 'response-head'].flatMap((r) => ['get', 'get-all', 'has', 'set', 'append', 'remove', 'size', 'entries'].map((m) => `[method]${r}.${m}`)),
  '[method]request-head.method', '[method]request-head.scheme', '[method]request-head.authority', '[method]request-head.path',
  '[method]request-head.set-method', '[method]request-head.set-authority', '[method]request-head.set-path', '[resource-drop]request-head',
  '[method]response-head.status', '[method]response-head.set-status', '[resource-drop]response-head',
]);
const HOST_FUNCTION_NAMES = new Set([
  'log', 'counter-add', 'now', 'monotonic', 'random', 'shared-get', 'shared-set', 'shared-add', 'delay-request', 'route-to-subset',
  'set-per-try-timeout', 'upstream-error', 'upstream-load', 'report-error',
]);
const PHASE_EXPORTS = ['configure', 'on-connection', 'on-request-headers', 'on-response-headers'] as const;

/**
 * The core module that holds the filter, if the component is one core module made by
 * wit-component with the world's names (the others are its shims); else undefined.
 */
export function directShape(modules: Record<string, WebAssembly.Module>): DirectShape | undefined {
  let found: DirectShape | undefined;
  for (const [file, m] of Object.entries(modules)) {
    const imports = WebAssembly.Module.imports(m);
    const exports = new Set(WebAssembly.Module.exports(m).map((e) => e.name));
    const handler = [...exports].find((n) => n.startsWith(`${HANDLER_INTERFACE}@${WORLD_VERSION}.`) && n.endsWith('#configure'));
    if (!handler) {
      if (imports.some((i) => i.module.startsWith('ambit:filter/'))) return undefined;
      continue;
    }
    if (found) return undefined;
    const version = handler.slice(HANDLER_INTERFACE.length, handler.indexOf('#'));
    if (!exports.has('memory') || !exports.has('cabi_realloc')) return undefined;
    if (!PHASE_EXPORTS.every((p) => exports.has(`${HANDLER_INTERFACE}${version}#${p}`))) return undefined;
    for (const i of imports) {
      const known = i.kind === 'function' && (
        (i.module === `${TYPES_INTERFACE}${version}` && TYPES_FUNCTIONS.has(i.name))
        || (i.module === `${HOST_INTERFACE}${version}` && HOST_FUNCTION_NAMES.has(i.name)));
      if (!known) return undefined;
    }
    found = { file, version };
  }
  return found;
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error'];
const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

class Trap extends WebAssembly.RuntimeError {}

/** The resources lent for the call in progress (handles 1, 2, 3), and whether the guest dropped them. */
interface Loans {
  ctx: ContextResource | undefined;
  req: RequestHeadResource | undefined;
  res: ResponseHeadResource | undefined;
  /** Bit per type (1 ctx, 2 req, 4 res) of loans not dropped yet. */
  open: number;
}

type Fn = (...args: number[]) => number;

/** The handles a call's resources are lent under. */
const CTX = 1;
const REQ = 2;
const RES = 3;

/** Instantiates the main module and binds it to `host` and the lent resources. */
export function instantiateDirect(module: WebAssembly.Module, shape: DirectShape, host: HostImports): ComponentHandler {
  const loans: Loans = { ctx: undefined, req: undefined, res: undefined, open: 0 };
  let memory: WebAssembly.Memory | undefined;
  let realloc: Fn | undefined;
  let buffer: ArrayBuffer | undefined;
  let view = new DataView(new ArrayBuffer(0));
  let bytes: Buffer = Buffer.alloc(0);
  let entered = false;
  let poisoned = false;

  const mem = (): DataView => {
    const b = memory!.buffer;
    if (b !== buffer) {
      buffer = b;
      view = new DataView(b);
      bytes = Buffer.from(b);
    }
    return view;
  };
  const bounds = (ptr: number, len: number, align: number): void => {
    if (ptr % align !== 0) throw new Trap(`pointer ${ptr} is not aligned to ${align}`);
    if (ptr + len > mem().byteLength) throw new Trap(`pointer ${ptr} + ${len} is out of bounds of memory`);
  };

  const readString = (ptr: number, len: number): string => {
    ptr >>>= 0;
    len >>>= 0;
    bounds(ptr, len, 1);
    let ascii = true;
    for (let i = ptr, end = ptr + len; i < end; i++) if (bytes[i]! >= 0x80) { ascii = false; break; }
    if (ascii) return bytes.toString('latin1', ptr, ptr + len);
    try {
      return utf8.decode(bytes.subarray(ptr, ptr + len));
    } catch {
      throw new Trap('a string from the filter is not valid UTF-8');
    }
  };
  const alloc = (size: number, align: number): number => {
    const p = realloc!(0, 0, align, size) >>> 0;
    bounds(p, size, align);
    return p;
  };
  /** Lowers `s` into guest memory; writes (ptr, len) at `at`. */
  const writeString = (at: number, s: string): void => {
    const len = Buffer.byteLength(s, 'utf8');
    const p = len === 0 ? 1 : alloc(len, 1);
    if (len > 0) {
      mem();
      if (len === s.length) for (let i = 0; i < len; i++) bytes[p + i] = s.charCodeAt(i);
      else encoder.encodeInto(s, bytes.subarray(p, p + len));
    }
    const v = mem();
    v.setUint32(at, p, true);
    v.setUint32(at + 4, len, true);
  };
  const writeOptionString = (at: number, s: string | null | undefined): void => {
    if (s === undefined || s === null) {
      mem().setUint8(at, 0);
      return;
    }
    mem().setUint8(at, 1);
    writeString(at + 4, s);
  };
  const writeStrings = (at: number, list: readonly string[]): void => {
    const base = list.length === 0 ? 4 : alloc(list.length * 8, 4);
    for (let i = 0; i < list.length; i++) writeString(base + i * 8, list[i]!);
    const v = mem();
    v.setUint32(at, base, true);
    v.setUint32(at + 4, list.length, true);
  };
  const writePairs = (at: number, list: ReadonlyArray<readonly [string, string]>): void => {
    const base = list.length === 0 ? 4 : alloc(list.length * 16, 4);
    for (let i = 0; i < list.length; i++) {
      writeString(base + i * 16, list[i]![0]);
      writeString(base + i * 16 + 8, list[i]![1]);
    }
    const v = mem();
    v.setUint32(at, base, true);
    v.setUint32(at + 4, list.length, true);
  };
  const writePeer = (at: number, p: Peer): void => {
    writeOptionString(at, p.identity);
    writeOptionString(at + 12, p.workload);
    writeOptionString(at + 24, p.namespace);
    writeString(at + 36, p.address);
    mem().setUint16(at + 44, p.port, true);
  };
  const writeTls = (at: number, t: TlsInfo | undefined): void => {
    if (!t) {
      mem().setUint8(at, 0);
      return;
    }
    mem().setUint8(at, 1);
    writeString(at + 4, t.version);
    writeString(at + 12, t.cipher);
    writeOptionString(at + 20, t.sni);
  };
  const ret = (at: number, align: number, size: number): number => {
    bounds(at >>> 0, size, align);
    return at >>> 0;
  };

  const ctx = (h: number): ContextResource => {
    if (h !== CTX || !(loans.open & 1)) throw new Trap(`unknown context handle ${h}`);
    return loans.ctx!;
  };
  const req = (h: number): RequestHeadResource => {
    if (h !== REQ || !(loans.open & 2)) throw new Trap(`unknown request-head handle ${h}`);
    return loans.req!;
  };
  const res = (h: number): ResponseHeadResource => {
    if (h !== RES || !(loans.open & 4)) throw new Trap(`unknown response-head handle ${h}`);
    return loans.res!;
  };
  const drop = (bit: number, handle: number, what: string) => (h: number): void => {
    if (h !== handle || !(loans.open & bit)) throw new Trap(`${what} handle ${h} dropped twice or never lent`);
    loans.open &= ~bit;
  };
  const headCalls = (prefix: string, head: (h: number) => HeadResource): Record<string, Fn | ((...a: number[]) => void)> => ({
    [`${prefix}.get`]: (h, p, l, r) => writeOptionString(ret(r!, 4, 12), head(h!).get(readString(p!, l!))),
    [`${prefix}.get-all`]: (h, p, l, r) => writeStrings(ret(r!, 4, 8), head(h!).getAll(readString(p!, l!))),
    [`${prefix}.has`]: (h, p, l) => (head(h!).has(readString(p!, l!)) ? 1 : 0),
    [`${prefix}.set`]: (h, np, nl, vp, vl) => head(h!).set(readString(np!, nl!), readString(vp!, vl!)),
    [`${prefix}.append`]: (h, np, nl, vp, vl) => head(h!).append(readString(np!, nl!), readString(vp!, vl!)),
    [`${prefix}.remove`]: (h, p, l) => head(h!).remove(readString(p!, l!)),
    [`${prefix}.size`]: (h) => head(h!).size(),
    [`${prefix}.entries`]: (h, r) => writePairs(ret(r!, 4, 8), head(h!).entries()),
  });

  const types: Record<string, (...a: number[]) => number | void> = {
    '[method]context.direction': (h) => (ctx(h!).direction() === 'outbound' ? 1 : 0),
    '[method]context.source': (h, r) => writePeer(ret(r!, 4, 48), ctx(h!).source()),
    '[method]context.destination': (h, r) => writePeer(ret(r!, 4, 48), ctx(h!).destination()),
    '[method]context.source-key': (h) => ctx(h!).sourceKey() | 0,
    '[method]context.destination-key': (h) => ctx(h!).destinationKey() | 0,
    '[method]context.service': (h, r) => writeOptionString(ret(r!, 4, 12), ctx(h!).service()),
    '[method]context.route': (h, r) => writeOptionString(ret(r!, 4, 12), ctx(h!).route()),
    '[method]context.request-id': (h, r) => writeString(ret(r!, 4, 8), ctx(h!).requestId()),
    '[method]context.attempt': (h) => ctx(h!).attempt(),
    '[method]context.tls': (h, r) => writeTls(ret(r!, 4, 32), ctx(h!).tls()),
    '[resource-drop]context': drop(1, CTX, 'context'),
    '[method]request-head.method': (h, r) => writeString(ret(r!, 4, 8), req(h!).method()),
    '[method]request-head.scheme': (h, r) => writeString(ret(r!, 4, 8), req(h!).scheme()),
    '[method]request-head.authority': (h, r) => writeString(ret(r!, 4, 8), req(h!).authority()),
    '[method]request-head.path': (h, r) => writeString(ret(r!, 4, 8), req(h!).path()),
    '[method]request-head.set-method': (h, p, l) => req(h!).setMethod(readString(p!, l!)),
    '[method]request-head.set-authority': (h, p, l) => req(h!).setAuthority(readString(p!, l!)),
    '[method]request-head.set-path': (h, p, l) => req(h!).setPath(readString(p!, l!)),
    ...headCalls('[method]request-head', req),
    '[resource-drop]request-head': drop(2, REQ, 'request-head'),
    '[method]response-head.status': (h) => res(h!).status(),
    '[method]response-head.set-status': (h, s) => res(h!).setStatus(s! & 0xffff),
    ...headCalls('[method]response-head', res),
    '[resource-drop]response-head': drop(4, RES, 'response-head'),
  };

  const hostCalls: Record<string, (...a: number[]) => number | void> = {
    log: (level, p, l) => {
      const lv = LOG_LEVELS[level!];
      if (lv === undefined) throw new Trap(`invalid log-level ${level}`);
      host.log(lv, readString(p!, l!));
    },
    'counter-add': (p, l, d) => host.counterAdd(readString(p!, l!), d! >>> 0),
    now: () => host.now(),
    monotonic: () => host.monotonic(),
    random: () => host.random(),
    'shared-get': (p, l, r) => {
      const at = ret(r!, 4, 16);
      const e = host.sharedGet(readString(p!, l!));
      if (!e) {
        mem().setUint8(at, 0);
        return;
      }
      mem().setUint8(at, 1);
      writeString(at + 4, e.value);
      mem().setUint32(at + 12, e.version >>> 0, true);
    },
    'shared-set': (kp, kl, vp, vl, version) => (host.sharedSet(readString(kp!, kl!), readString(vp!, vl!), version! >>> 0) ? 1 : 0),
    'shared-add': (p, l, delta) => host.sharedAdd(readString(p!, l!), delta!),
    'delay-request': (ms) => host.delayRequest(ms! >>> 0),
    'route-to-subset': (p, l) => host.routeToSubset(readString(p!, l!)),
    'set-per-try-timeout': (ms) => host.setPerTryTimeout(ms! >>> 0),
    'upstream-error': (r) => writeOptionString(ret(r!, 4, 12), host.upstreamError()),
    'upstream-load': (r) => {
      const at = ret(r!, 4, 8);
      const load = host.upstreamLoad();
      mem().setUint32(at, load.activeRequests >>> 0, true);
      mem().setUint32(at + 4, load.activeRetries >>> 0, true);
    },
    'report-error': (p, l) => host.reportError(readString(p!, l!)),
  };

  const instance = new WebAssembly.Instance(module, {
    [`${TYPES_INTERFACE}${shape.version}`]: types,
    [`${HOST_INTERFACE}${shape.version}`]: hostCalls,
  } as WebAssembly.Imports);
  const ex = instance.exports;
  memory = ex.memory as WebAssembly.Memory;
  realloc = ex.cabi_realloc as Fn;
  const fn = (name: string): Fn => ex[`${HANDLER_INTERFACE}${shape.version}#${name}`] as Fn;
  const post = (name: string): Fn | undefined => ex[`cabi_post_${HANDLER_INTERFACE}${shape.version}#${name}`] as Fn | undefined;
  const calls = {
    configure: [fn('configure'), post('configure')],
    connection: [fn('on-connection'), post('on-connection')],
    request: [fn('on-request-headers'), post('on-request-headers')],
    response: [fn('on-response-headers'), post('on-response-headers')],
  } as const;
  if (typeof ex._initialize === 'function') (ex._initialize as () => void)();

  /** Runs one export: lends, calls, reads the result, checks the loans came back, runs post-return. */
  const enter = <T>(call: readonly [Fn, Fn | undefined], args: number[], lift: (at: number) => T): T => {
    if (poisoned) throw new Trap('cannot enter component instance: it trapped before');
    if (entered) throw new Trap('cannot enter component instance: a call is in progress');
    entered = true;
    try {
      const at = call[0](...args) >>> 0;
      const out = lift(at);
      if (loans.open !== 0) throw new Trap('the filter returned still holding a handle it was lent (the context or a head); a filter must drop lent handles before it returns (borrow handles still remain at the end of the call)');
      call[1]?.(at);
      return out;
    } catch (e) {
      poisoned = true;
      throw e;
    } finally {
      entered = false;
      loans.ctx = undefined;
      loans.req = undefined;
      loans.res = undefined;
      loans.open = 0;
    }
  };
  const disc = (at: number, max: number, what: string): number => {
    const d = mem().getUint8(at);
    if (d > max) throw new Trap(`invalid variant discriminant for ${what}`);
    return d;
  };
  const liftLocalResponse = (at: number): LocalResponse => {
    const v = mem();
    const status = v.getUint16(at, true);
    const base = v.getUint32(at + 4, true);
    const n = v.getUint32(at + 8, true);
    bounds(base, n * 16, 4);
    const headers: Array<[string, string]> = [];
    for (let i = 0; i < n; i++) {
      const e = base + i * 16;
      const d = mem();
      headers.push([readString(d.getUint32(e, true), d.getUint32(e + 4, true)), readString(d.getUint32(e + 8, true), d.getUint32(e + 12, true))]);
    }
    const body = readString(mem().getUint32(at + 12, true), mem().getUint32(at + 16, true));
    return { status, headers, body };
  };
  const liftString = (at: number): string => readString(mem().getUint32(at, true), mem().getUint32(at + 4, true));

  return {
    configure(config: string): ConfigureResult {
      if (poisoned) throw new Trap('cannot enter component instance: it trapped before');
      const len = Buffer.byteLength(config, 'utf8');
      const p = len === 0 ? 1 : alloc(len, 1);
      if (len > 0) {
        mem();
        encoder.encodeInto(config, bytes.subarray(p, p + len));
      }
      return enter(calls.configure, [p, len], (at) => {
        ret(at, 4, 16);
        if (disc(at, 1, 'configure-result') === 1) return { tag: 'invalid', val: liftString(at + 4) };
        const flags = mem().getUint8(at + 12);
        return {
          tag: 'ok',
          val: {
            name: liftString(at + 4),
            phases: {
              connection: (flags & 1) !== 0, requestHeaders: (flags & 2) !== 0, responseHeaders: (flags & 4) !== 0,
              requestBody: (flags & 8) !== 0, responseBody: (flags & 16) !== 0,
            },
          },
        };
      });
    },
    onConnection(c: ContextResource): ConnectionAction {
      loans.ctx = c;
      loans.open = 1;
      return enter(calls.connection, [CTX], (at) => {
        ret(at, 4, 12);
        return disc(at, 1, 'connection-action') === 0 ? { tag: 'allow' } : { tag: 'deny', val: liftString(at + 4) };
      });
    },
    onRequestHeaders(c: ContextResource, r: RequestHeadResource): ComponentRequestAction {
      loans.ctx = c;
      loans.req = r;
      loans.open = 3;
      return enter(calls.request, [CTX, REQ], (at) => {
        ret(at, 4, 24);
        return disc(at, 1, 'request-action') === 0 ? { tag: 'proceed' } : { tag: 'respond', val: liftLocalResponse(at + 4) };
      });
    },
    onResponseHeaders(c: ContextResource, r: RequestHeadResource, s: ResponseHeadResource): ComponentResponseAction {
      loans.ctx = c;
      loans.req = r;
      loans.res = s;
      loans.open = 7;
      return enter(calls.response, [CTX, REQ, RES], (at) => {
        ret(at, 4, 24);
        switch (disc(at, 2, 'response-action')) {
          case 0: return { tag: 'proceed' };
          case 1: return { tag: 'respond', val: liftLocalResponse(at + 4) };
          default: return { tag: 'retry', val: { delayMs: mem().getUint32(at + 4, true), reason: liftString(at + 8) } };
        }
      });
    },
  };
}
