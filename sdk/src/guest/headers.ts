import { applyHeaderOp } from '../abi/ops.js';
import type { HeaderOp, Headers } from '../abi/types.js';

/**
 * A header list a filter reads and changes. Every change is applied locally (so
 * later reads see it) and recorded as an operation; only the operations travel
 * back to the host.
 */
export class HeaderMap {
  /** @internal */
  readonly ops: HeaderOp[];
  readonly #list: Headers;

  /** @internal */
  constructor(list: Headers, ops: HeaderOp[]) {
    this.#list = list;
    this.ops = ops;
  }

  /** The first value of `name` (case-insensitive), or undefined. */
  get(name: string): string | undefined {
    const n = name.toLowerCase();
    for (const [k, v] of this.#list) if (k === n) return v;
    return undefined;
  }

  /** Every value of `name`, in order. */
  getAll(name: string): string[] {
    const n = name.toLowerCase();
    const out: string[] = [];
    for (const [k, v] of this.#list) if (k === n) out.push(v);
    return out;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Replaces every value of `name` with `value`. */
  set(name: string, value: string): this {
    return this.#record({ tag: 'set', val: [checkName(name), String(value)] });
  }

  /** Adds a value, keeping the existing ones. */
  append(name: string, value: string): this {
    return this.#record({ tag: 'append', val: [checkName(name), String(value)] });
  }

  /** Removes every value of `name`. */
  delete(name: string): this {
    return this.#record({ tag: 'remove', val: checkName(name) });
  }

  /** `[name, value]` pairs in order; names are lower-case. */
  entries(): IterableIterator<[string, string]> {
    return this.#list.map(([k, v]): [string, string] => [k, v])[Symbol.iterator]();
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  #record(op: HeaderOp): this {
    applyHeaderOp(this.#list, op);
    this.ops.push(op);
    return this;
  }
}

function checkName(name: string): string {
  const n = String(name).toLowerCase();
  if (n.length === 0 || n.startsWith(':')) {
    throw new TypeError(`invalid header name ${JSON.stringify(name)}: use the request/response properties for pseudo-headers`);
  }
  return n;
}
