import type { Natives } from './natives.js';

const K = Symbol('ambit.head');
const H = Symbol('ambit.handle');
let N: Natives;

/** @internal Binds header maps to the engine's natives (once, when the filter is installed). */
export function useHeaderNatives(n: Natives): void {
  N = n;
}

/** Which head a {@link HeaderMap} reads: the request's, the response's, or the forwarded request's (read-only). */
type HeadKind = 'request' | 'response' | 'forwarded';

/**
 * The header list of a request or response. Every read asks the host for just what it
 * names; every change is made on the host's copy at once, so the next filter and the
 * upstream see it. Names are case-insensitive; reads return them lower-case.
 */
export class HeaderMap {
  declare [K]: HeadKind;
  declare [H]: number;

  /** @internal */
  constructor(kind: HeadKind, handle: number) {
    this[K] = kind;
    this[H] = handle;
  }

  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined {
    return this[K] === 'response' ? N.resGet(this[H], String(name)) : N.reqGet(this[H], String(name));
  }

  /** Every value of `name`, in order. */
  getAll(name: string): string[] {
    return this[K] === 'response' ? N.resGetAll(this[H], String(name)) : N.reqGetAll(this[H], String(name));
  }

  has(name: string): boolean {
    return this[K] === 'response' ? N.resHas(this[H], String(name)) : N.reqHas(this[H], String(name));
  }

  /** Replaces every value of `name` with `value`. */
  set(name: string, value: string): this {
    const k = this.writable(name);
    if (this[K] === 'response') N.resSet(this[H], k, String(value));
    else N.reqSet(this[H], k, String(value));
    return this;
  }

  /** Adds a value, keeping the existing ones. */
  append(name: string, value: string): this {
    const k = this.writable(name);
    if (this[K] === 'response') N.resAppend(this[H], k, String(value));
    else N.reqAppend(this[H], k, String(value));
    return this;
  }

  /** Removes every value of `name`. */
  delete(name: string): this {
    const k = this.writable(name);
    if (this[K] === 'response') N.resRemove(this[H], k);
    else N.reqRemove(this[H], k);
    return this;
  }

  /** How many entries the list has (a repeated header counts once per value). */
  get size(): number {
    return this[K] === 'response' ? N.resSize(this[H]) : N.reqSize(this[H]);
  }

  /** `[name, value]` pairs in order; names are lower-case. One host call for the whole list. */
  entries(): IterableIterator<[string, string]> {
    const list = this[K] === 'response' ? N.resEntries(this[H]) : N.reqEntries(this[H]);
    return list[Symbol.iterator]();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  private writable(name: string): string {
    if (this[K] === 'forwarded') {
      throw new TypeError('the forwarded request is read-only in the response phase: change it in onRequest');
    }
    const n = String(name);
    if (n.length === 0 || n.startsWith(':')) {
      throw new TypeError(`invalid header name ${JSON.stringify(name)}: use the request/response properties for pseudo-headers`);
    }
    return n;
  }
}
