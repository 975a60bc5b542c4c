import type { ConnectionInfo, FilterContext, HttpRequest, HttpResponse, Peer, ReadonlyRequest, TlsInfo } from './public-types.js';
import { HeaderMap } from './headers.js';
import type * as abi from '../abi/types.js';

/** Turns an ABI peer (options as null or undefined) into the author's view. */
export function toPeer(p: abi.Peer): Peer {
  return {
    identity: p.identity ?? undefined,
    workload: p.workload ?? undefined,
    namespace: p.namespace ?? undefined,
    address: p.address,
    port: p.port,
  };
}

export function toContext<C>(c: abi.Context, config: C): FilterContext<C> {
  return {
    direction: c.direction,
    source: toPeer(c.source),
    destination: toPeer(c.destination),
    service: c.service ?? undefined,
    route: c.route ?? undefined,
    requestId: c.requestId,
    attempt: c.attempt,
    config,
  };
}

export function toConnection(c: abi.Connection): ConnectionInfo {
  const tls: TlsInfo | undefined = c.tls
    ? { version: c.tls.version, cipher: c.tls.cipher, sni: c.tls.sni ?? undefined }
    : undefined;
  return { tls };
}

/** A request whose changes are recorded as header operations. */
export class RequestView implements HttpRequest {
  readonly headers: HeaderMap;
  readonly ops: abi.HeaderOp[] = [];
  readonly #head: abi.RequestHead;

  constructor(head: abi.RequestHead) {
    this.#head = head;
    this.headers = new HeaderMap(head.headers, this.ops);
  }
  get method(): string { return this.#head.method; }
  set method(v: string) { this.#pseudo(':method', v); this.#head.method = v; }
  get path(): string { return this.#head.path; }
  set path(v: string) { this.#pseudo(':path', v); this.#head.path = v; }
  get authority(): string { return this.#head.authority; }
  set authority(v: string) { this.#pseudo(':authority', v); this.#head.authority = v; }
  get scheme(): string { return this.#head.scheme; }

  #pseudo(name: string, value: string): void {
    this.ops.push({ tag: 'set', val: [name, String(value)] });
  }
}

export function readonlyRequest(head: abi.RequestHead): ReadonlyRequest {
  const headers = new HeaderMap(head.headers.slice(), []);
  return { method: head.method, path: head.path, authority: head.authority, scheme: head.scheme, headers };
}

/** A response whose changes are recorded as header operations. */
export class ResponseView implements HttpResponse {
  readonly headers: HeaderMap;
  readonly ops: abi.HeaderOp[] = [];
  readonly #head: abi.ResponseHead;

  constructor(head: abi.ResponseHead) {
    this.#head = head;
    this.headers = new HeaderMap(head.headers, this.ops);
  }
  get status(): number { return this.#head.status; }
  set status(v: number) {
    this.ops.push({ tag: 'set', val: [':status', String(v)] });
    this.#head.status = v;
  }
}
