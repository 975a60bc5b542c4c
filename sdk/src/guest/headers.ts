import { natives, type Natives } from './natives.js';

/** Which head a {@link HeaderMap} reads: the request's, the response's, or the forwarded request's (read-only). */
type HeadKind = 'request' | 'response' | 'forwarded';

/**
 * The header list of a request or response. Every read asks the host for just what it
 * names; every change is made on the host's copy at once, so the next filter and the
 * upstream see it. Names are case-insensitive; reads return them lower-case.
 */
export class HeaderMap {
  readonly #n: Natives;
  readonly #h: number;
  readonly #kind: HeadKind;

  /** @internal */
  constructor(kind: HeadKind, handle: number) {
    this.#n = natives();
    this.#h = handle;
    this.#kind = kind;
  }

  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined {
    const n = this.#n;
    return this.#kind === 'response' ? n.resGet(this.#h, String(name)) : n.reqGet(this.#h, String(name));
  }

  /** Every value of `name`, in order. */
  getAll(name: string): string[] {
    const n = this.#n;
    return this.#kind === 'response' ? n.resGetAll(this.#h, String(name)) : n.reqGetAll(this.#h, String(name));
  }

  has(name: string): boolean {
    const n = this.#n;
    return this.#kind === 'response' ? n.resHas(this.#h, String(name)) : n.reqHas(this.#h, String(name));
  }

  /** Replaces every value of `name` with `value`. */
  set(name: string, value: string): this {
    const k = this.#writable(name);
    if (this.#kind === 'response') this.#n.resSet(this.#h, k, String(value));
    else this.#n.reqSet(this.#h, k, String(value));
    return this;
  }

  /** Adds a value, keeping the existing ones. */
  append(name: string, value: string): this {
    const k = this.#writable(name);
    if (this.#kind === 'response') this.#n.resAppend(this.#h, k, String(value));
    else this.#n.reqAppend(this.#h, k, String(value));
    return this;
  }

  /** Removes every value of `name`. */
  delete(name: string): this {
    const k = this.#writable(name);
    if (this.#kind === 'response') this.#n.resRemove(this.#h, k);
    else this.#n.reqRemove(this.#h, k);
    return this;
  }

  /** How many entries the list has (a repeated header counts once per value). */
  get size(): number {
    return this.#kind === 'response' ? this.#n.resSize(this.#h) : this.#n.reqSize(this.#h);
  }

  /** `[name, value]` pairs in order; names are lower-case. One host call for the whole list. */
  entries(): IterableIterator<[string, string]> {
    const list = this.#kind === 'response' ? this.#n.resEntries(this.#h) : this.#n.reqEntries(this.#h);
    return list[Symbol.iterator]();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  #writable(name: string): string {
    if (this.#kind === 'forwarded') {
      throw new TypeError('the forwarded request is read-only in the response phase: change it in onRequest');
    }
    const n = String(name);
    if (n.length === 0 || n.startsWith(':')) {
      throw new TypeError(`invalid header name ${JSON.stringify(name)}: use the request/response properties for pseudo-headers`);
    }
    return n;
  }
}
