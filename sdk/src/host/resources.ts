/**
 * The `types` interface's resources, implemented by the host on V8: one object per
 * resource per phase, lent to the guest (a `borrow`) for that call only.
 *
 * - `context` answers from the facts the proxy passed.
 * - `request-head` in the request phase: reads see the filter's own changes; each change
 *   is checked (RFC 9110, size limits) and recorded as the header operation the proxy
 *   applies (`set`, `append`, `remove`; `:method`, `:path`, `:authority`). The head the
 *   proxy passed is not touched: the caller applies the operations once the call
 *   succeeded, so a failing call leaves nothing behind.
 * - `request-head` in the response phase: the request as forwarded, read-only.
 * - `response-head`: like the request head, with `:status`.
 *
 * A method that refuses traps the guest's call (its exception leaves through the
 * component), which the host treats as the filter failing.
 */
import { peerKey } from './peer-keys.js';
import { applyHeaderOp } from '../abi/ops.js';
import type {
  Connection, Context, ContextResource, Direction, HeaderOp, Headers, Peer, RequestHead, RequestHeadResource, ResponseHead,
  ResponseHeadResource, TlsInfo,
} from '../abi/types.js';
import { AmbitError } from './errors.js';
import { OUTPUT_LIMITS, checkAuthority, checkHeaderName, checkHeaderValue, checkMethod, checkPath, checkStatus } from './output.js';

/**
 * The key jco's glue files a host object under when it lends it. One fixed key per
 * object means the glue's table of lent objects holds one entry per resource type,
 * the one lent now, instead of growing by one every call.
 */
const LENT_KEY = Symbol.for('cabiRep');
const LENT_SLOT = 1;

function expired(what: string): AmbitError {
  return new AmbitError('AMBIT_ERR_HOST_CALL', `a ${what} handle was used after the call it was lent for`);
}

/** `context`. */
export class HostContext implements ContextResource {
  declare [LENT_KEY]: number;
  #facts: Context | undefined;
  #tls: TlsInfo | undefined;

  constructor(facts: Context, tls?: TlsInfo | null) {
    this[LENT_KEY] = LENT_SLOT;
    this.#facts = facts;
    this.#tls = tls ?? facts.tls ?? undefined;
  }

  static of(conn: Connection): HostContext {
    return new HostContext(conn.context, conn.tls);
  }

  #get(): Context {
    if (!this.#facts) throw expired('context');
    return this.#facts;
  }

  direction(): Direction { return this.#get().direction; }
  source(): Peer { return this.#get().source; }
  destination(): Peer { return this.#get().destination; }
  sourceKey(): number { return peerKey(this.#get().source); }
  destinationKey(): number { return peerKey(this.#get().destination); }
  service(): string | undefined { return this.#get().service ?? undefined; }
  route(): string | undefined { return this.#get().route ?? undefined; }
  requestId(): string { return this.#get().requestId; }
  attempt(): number { return this.#get().attempt; }
  tls(): TlsInfo | undefined { this.#get(); return this.#tls; }

  /** Ends the loan: the guest's later calls on this handle trap. */
  close(): void { this.#facts = undefined; }
}

/**
 * The header calls of both heads, over the head's list. Writes go to a copy made on the
 * first write, and are recorded as operations.
 */
abstract class HostHead {
  declare [LENT_KEY]: number;
  /** The header operations this call made, in order. */
  readonly ops: HeaderOp[] = [];
  protected headers: Headers;
  protected closed = false;
  #copied = false;
  #addedBytes = 0;
  #added = 0;

  constructor(protected readonly filter: string, headers: Headers, private readonly readOnly: string | undefined, private readonly kind: string) {
    this[LENT_KEY] = LENT_SLOT;
    this.headers = headers;
  }

  protected read(): void {
    if (this.closed) throw expired(this.kind);
  }

  /** Refuses a write where the head is read-only, and starts the copy the writes go to. */
  protected write(): void {
    this.read();
    if (this.readOnly !== undefined) throw new AmbitError('AMBIT_ERR_HOST_CALL', `filter ${this.filter} tried to change ${this.readOnly}`);
    if (!this.#copied) {
      this.headers = this.headers.slice();
      this.#copied = true;
    }
  }

  protected record(op: HeaderOp): void {
    this.ops.push(op);
  }

  #add(name: string, value: string, tag: 'set' | 'append'): void {
    this.write();
    const n = checkHeaderName(this.filter, name);
    checkHeaderValue(this.filter, n, value);
    this.#addedBytes += n.length + value.length;
    this.#added += 1;
    if (this.#added > OUTPUT_LIMITS.addedHeaders || this.#addedBytes > OUTPUT_LIMITS.addedHeaderBytes) {
      throw new AmbitError(
        'AMBIT_ERR_FILTER_OUTPUT',
        `filter ${this.filter} added more than ${OUTPUT_LIMITS.addedHeaders} headers or ${OUTPUT_LIMITS.addedHeaderBytes} bytes of headers in one call`,
      );
    }
    const op: HeaderOp = { tag, val: [n, value] };
    applyHeaderOp(this.headers, op);
    this.record(op);
  }

  get(name: string): string | undefined {
    this.read();
    const n = name.toLowerCase();
    for (const h of this.headers) if (h[0] === n) return h[1];
    return undefined;
  }

  getAll(name: string): string[] {
    this.read();
    const n = name.toLowerCase();
    const out: string[] = [];
    for (const h of this.headers) if (h[0] === n) out.push(h[1]);
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  set(name: string, value: string): void {
    this.#add(name, value, 'set');
  }

  append(name: string, value: string): void {
    this.#add(name, value, 'append');
  }

  remove(name: string): void {
    this.write();
    const op: HeaderOp = { tag: 'remove', val: checkHeaderName(this.filter, name) };
    applyHeaderOp(this.headers, op);
    this.record(op);
  }

  size(): number {
    this.read();
    return this.headers.length;
  }

  entries(): Headers {
    this.read();
    return this.headers;
  }

  /** Ends the loan: the guest's later calls on this handle trap. */
  close(): void {
    this.closed = true;
  }
}

/** `request-head`: writable in the request phase, read-only in the response phase. */
export class HostRequestHead extends HostHead implements RequestHeadResource {
  #method: string;
  #authority: string;
  #path: string;
  readonly #scheme: string;

  /** `phase`: `request` (writes recorded) or `response` (the forwarded request, read-only). */
  constructor(filter: string, head: RequestHead, phase: 'request' | 'response') {
    super(filter, head.headers, phase === 'response' ? 'the request in onResponse: the forwarded request is read-only in the response phase' : undefined, 'request-head');
    this.#method = head.method;
    this.#authority = head.authority;
    this.#path = head.path;
    this.#scheme = head.scheme;
  }

  method(): string { this.read(); return this.#method; }
  scheme(): string { this.read(); return this.#scheme; }
  authority(): string { this.read(); return this.#authority; }
  path(): string { this.read(); return this.#path; }

  setMethod(value: string): void {
    this.write();
    checkMethod(this.filter, value);
    this.#method = value;
    this.record({ tag: 'set', val: [':method', value] });
  }

  setAuthority(value: string): void {
    this.write();
    checkAuthority(this.filter, value);
    this.#authority = value;
    this.record({ tag: 'set', val: [':authority', value] });
  }

  setPath(value: string): void {
    this.write();
    checkPath(this.filter, value);
    this.#path = value;
    this.record({ tag: 'set', val: [':path', value] });
  }
}

/** `response-head`. */
export class HostResponseHead extends HostHead implements ResponseHeadResource {
  #status: number;

  constructor(filter: string, head: ResponseHead) {
    super(filter, head.headers, undefined, 'response-head');
    this.#status = head.status;
  }

  status(): number { this.read(); return this.#status; }

  setStatus(status: number): void {
    this.write();
    checkStatus(this.filter, status);
    this.#status = status;
    this.record({ tag: 'set', val: [':status', String(status)] });
  }
}

/** The classes a component's `ambit:filter/types` import is made of, as jco's glue expects them. */
export const TYPES_IMPORT = { Context: HostContext, RequestHead: HostRequestHead, ResponseHead: HostResponseHead } as const;
