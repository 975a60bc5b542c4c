/**
 * An in-memory table for the `shared` capability: a fixed-size hash table in a
 * SharedArrayBuffer, so every thread that holds it reads and writes the same entries
 * synchronously. The test harness gives one to each loaded filter. The node proxy keeps its
 * tables in mapped files instead (`runtime/addon/src/shared-table.c`), one per scope for all
 * of the node's worker processes, with the same layout rules as here.
 *
 * Layout: a header (a version counter), then one lock word per bucket, then buckets of
 * {@link BUCKET_SLOTS} slots. A key hashes (FNV-1a) to one bucket; every operation on a
 * key holds its bucket's lock (Atomics.compareExchange of the owner's thread id, with
 * Atomics.wait when contended) for the few microseconds a copy takes, so
 * compare-and-set and add are atomic across threads. A thread stopped while holding a
 * lock (a filter worker terminated on a deadline) has it released by whoever stopped it
 * ({@link SharedTable.releaseLocksOf}); a write empties its slot first, so a write cut
 * short loses that entry rather than corrupting it.
 *
 * Each slot: version (0: empty), key length, value length, then the key and value
 * bytes. Versions come from one counter (never 0).
 *
 * No live entry is ever evicted (an attacker choosing keys must not be able to push out a
 * drained rate-limit bucket): a table holds at most `maxKeys` keys, in 4 slots per key; a new
 * key takes an empty slot of its bucket while there is room, or the slot of an entry that has
 * expired (a value `~<unix ms>:…` whose time has passed; when the table holds `maxKeys`, the
 * expired entries of the next 8 buckets are cleared to make room); else the table is full: `set`
 * answers false and stores nothing, `add` throws AMBIT_ERR_SHARED_FULL.
 */
import { threadId } from 'node:worker_threads';
import { AmbitError } from './errors.js';
import type { SharedEntry } from '../abi/types.js';

export const MAX_SHARED_KEY_BYTES = 128;
export const MAX_SHARED_VALUE_BYTES = 256;
export const BUCKET_SLOTS = 8;
/** Default keys per binding (its `maxKeys`): 4096. */
export const DEFAULT_SHARED_ENTRIES = 4096;
/** Slots per key: buckets fill long before the table does. */
const SLOTS_PER_KEY = 4;
/** Buckets after a full one whose expired entries a new key may clear to make room. */
const SWEEP_BUCKETS = 8;
/** What a lock word holds while this thread owns it: its thread id + 1 (the main thread is 0). */
const OWNER = threadId + 1;

const HEADER_INTS = 4; // [0] version counter, [1] keys held, [2] max keys
const SLOT_META_INTS = 3; // version, key length, value length
const SLOT_BYTES = SLOT_META_INTS * 4 + MAX_SHARED_KEY_BYTES + MAX_SHARED_VALUE_BYTES;

/**
 * What the `shared` host functions need from a table. {@link SharedTable} is the in-memory one
 * (the test harness's); the node proxy uses a node-wide table in a mapped file, shared by all
 * of its worker processes, with the same rules.
 */
export interface SharedStore {
  get(key: string): SharedEntry | undefined;
  /** Stores `value` if the entry's version is `version` (0: the key must be absent). */
  set(key: string, value: string, version: number): boolean;
  /** Adds `delta` (truncated) to the integer at `key` (absent or not an integer: 0); returns the sum. */
  add(key: string, delta: number): number;
}

export class SharedTable implements SharedStore {
  readonly buffer: SharedArrayBuffer;
  readonly buckets: number;
  private readonly ints: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly locks: Int32Array;

  /** A new table for at most `maxKeys` keys. */
  static create(maxKeys = DEFAULT_SHARED_ENTRIES): SharedTable {
    let buckets = 8;
    while (buckets * BUCKET_SLOTS < maxKeys * SLOTS_PER_KEY) buckets *= 2;
    const size = HEADER_INTS * 4 + buckets * 4 + buckets * BUCKET_SLOTS * SLOT_BYTES;
    const table = new SharedTable(new SharedArrayBuffer(size));
    Atomics.store(table.ints, 2, maxKeys);
    return table;
  }

  /** Opens a table created by {@link SharedTable.create} (in this or another thread). */
  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.buckets = Math.floor((buffer.byteLength - HEADER_INTS * 4) / (4 + BUCKET_SLOTS * SLOT_BYTES));
    this.ints = new Int32Array(buffer, 0, HEADER_INTS);
    this.locks = new Int32Array(buffer, HEADER_INTS * 4, this.buckets);
    this.bytes = new Uint8Array(buffer);
  }

  get(key: string): SharedEntry | undefined {
    const k = encodeKey(key);
    return this.locked(k, (bucket) => {
      const slot = this.find(bucket, k);
      if (slot < 0) return undefined;
      return { value: this.readValue(slot), version: this.meta(slot)[0]! };
    });
  }

  /** Stores `value` if the entry's version is `version` (0: the key must be absent). */
  set(key: string, value: string, version: number): boolean {
    const k = encodeKey(key);
    const v = encodeValue(value);
    return this.locked(k, (bucket) => {
      const slot = this.find(bucket, k);
      const current = slot < 0 ? 0 : this.meta(slot)[0]!;
      if (current !== (version >>> 0)) return false;
      const to = slot < 0 ? this.claim(bucket) : slot;
      if (to < 0) return false;
      this.write(to, k, v);
      return true;
    });
  }

  /** Adds `delta` to the integer at `key` (absent or not an integer: 0); returns the new value. */
  add(key: string, delta: number): number {
    const k = encodeKey(key);
    const d = Math.trunc(delta);
    if (!Number.isFinite(d)) throw new AmbitError('AMBIT_ERR_HOST_CALL', `shared-add: delta must be a finite integer, got ${delta}`);
    return this.locked(k, (bucket) => {
      const slot = this.find(bucket, k);
      const old = slot < 0 ? 0 : integerOf(this.readValue(slot));
      const next = old + d + 0; // + 0: no "-0"
      const to = slot < 0 ? this.claim(bucket) : slot;
      if (to < 0) throw new AmbitError('AMBIT_ERR_SHARED_FULL', `shared storage: the table is full (maxKeys ${Atomics.load(this.ints, 2)}, no expired entry in the key's bucket); raise the binding's maxKeys`);
      this.write(to, k, Buffer.from(String(next)));
      return next;
    });
  }

  private meta(slot: number): Int32Array {
    return new Int32Array(this.buffer, slot, SLOT_META_INTS);
  }

  private slotOffset(bucket: number, i: number): number {
    return HEADER_INTS * 4 + this.buckets * 4 + (bucket * BUCKET_SLOTS + i) * SLOT_BYTES;
  }

  private find(bucket: number, key: Uint8Array): number {
    for (let i = 0; i < BUCKET_SLOTS; i++) {
      const off = this.slotOffset(bucket, i);
      const m = this.meta(off);
      if (m[0] === 0 || m[1] !== key.length) continue;
      const start = off + SLOT_META_INTS * 4;
      let same = true;
      for (let j = 0; j < key.length; j++) if (this.bytes[start + j] !== key[j]) { same = false; break; }
      if (same) return off;
    }
    return -1;
  }

  /** A slot for a new key: an expired entry's, else an empty one while there is room; -1: full. */
  private claim(bucket: number): number {
    let empty = -1;
    const now = Date.now();
    for (let i = 0; i < BUCKET_SLOTS; i++) {
      const off = this.slotOffset(bucket, i);
      if (this.meta(off)[0] === 0) {
        if (empty < 0) empty = off;
      } else if (expiresAt(this.readValue(off)) <= now) {
        return off;
      }
    }
    if (empty < 0) return -1;
    if (this.takeKey() || (this.sweep(bucket, now) > 0 && this.takeKey())) return empty;
    return -1;
  }

  /** Counts one more key, unless the table holds its maximum already. */
  private takeKey(): boolean {
    const max = Atomics.load(this.ints, 2) || DEFAULT_SHARED_ENTRIES;
    for (let n = Atomics.load(this.ints, 1); n < max; n = Atomics.load(this.ints, 1)) {
      if (Atomics.compareExchange(this.ints, 1, n, n + 1) === n) return true;
    }
    return false;
  }

  /**
   * Empties the expired entries of the next {@link SWEEP_BUCKETS} buckets (each only if its
   * lock is free at once: never a wait while holding `bucket`'s). Returns how many.
   */
  private sweep(bucket: number, now: number): number {
    let freed = 0;
    for (let i = 1; i <= SWEEP_BUCKETS && i < this.buckets; i++) {
      const b = (bucket + i) % this.buckets;
      if (Atomics.compareExchange(this.locks, b, 0, OWNER) !== 0) continue;
      for (let j = 0; j < BUCKET_SLOTS; j++) {
        const off = this.slotOffset(b, j);
        if (this.meta(off)[0] !== 0 && expiresAt(this.readValue(off)) <= now) {
          Atomics.store(this.meta(off), 0, 0);
          Atomics.sub(this.ints, 1, 1);
          freed++;
        }
      }
      Atomics.store(this.locks, b, 0);
      Atomics.notify(this.locks, b, 1);
    }
    return freed;
  }

  private write(slot: number, key: Uint8Array, value: Uint8Array): void {
    const m = this.meta(slot);
    const start = slot + SLOT_META_INTS * 4;
    Atomics.store(m, 0, 0);
    this.bytes.set(key, start);
    this.bytes.set(value, start + MAX_SHARED_KEY_BYTES);
    m[1] = key.length;
    m[2] = value.length;
    let version = Atomics.add(this.ints, 0, 1) + 1;
    if ((version >>> 0) === 0) version = Atomics.add(this.ints, 0, 1) + 1;
    Atomics.store(m, 0, version);
  }

  private readValue(slot: number): string {
    const len = this.meta(slot)[2]!;
    const start = slot + SLOT_META_INTS * 4 + MAX_SHARED_KEY_BYTES;
    return Buffer.from(this.bytes.subarray(start, start + len)).toString('utf8');
  }

  private locked<T>(key: Uint8Array, fn: (bucket: number) => T): T {
    const bucket = fnv1a(key) % this.buckets;
    for (let spins = 0; ; spins++) {
      const holder = Atomics.compareExchange(this.locks, bucket, 0, OWNER);
      if (holder === 0) break;
      // Brief spin, then sleep on the lock word until its holder lets go (it notifies).
      if (spins > 64) Atomics.wait(this.locks, bucket, holder, 1);
    }
    try {
      return fn(bucket);
    } finally {
      Atomics.store(this.locks, bucket, 0);
      Atomics.notify(this.locks, bucket, 1);
    }
  }

  /**
   * Releases the locks a stopped thread held (it was terminated mid-operation, e.g. a
   * filter worker past its deadline). Call once the thread has exited. Returns how many.
   */
  releaseLocksOf(thread: number): number {
    let n = 0;
    for (let b = 0; b < this.buckets; b++) {
      if (Atomics.compareExchange(this.locks, b, thread + 1, 0) === thread + 1) {
        Atomics.notify(this.locks, b);
        n++;
      }
    }
    return n;
  }
}

function encodeKey(key: string): Uint8Array {
  const b = Buffer.from(String(key));
  if (b.length === 0 || b.length > MAX_SHARED_KEY_BYTES) {
    throw new AmbitError('AMBIT_ERR_HOST_CALL', `shared storage: a key must be 1 to ${MAX_SHARED_KEY_BYTES} bytes, got ${b.length}; hash long keys first`);
  }
  return b;
}

function encodeValue(value: string): Uint8Array {
  const b = Buffer.from(String(value));
  if (b.length > MAX_SHARED_VALUE_BYTES) {
    throw new AmbitError('AMBIT_ERR_HOST_CALL', `shared storage: a value must be at most ${MAX_SHARED_VALUE_BYTES} bytes, got ${b.length}`);
  }
  return b;
}

/** When an entry may go: `~<unix ms>:…` says so; anything else never expires. */
export function expiresAt(value: string): number {
  const m = /^~(\d{1,17}):/.exec(value);
  return m ? Number(m[1]) : Number.POSITIVE_INFINITY;
}

/** The integer a value holds: an optional minus sign and decimal digits, a safe integer; else 0. */
function integerOf(value: string): number {
  if (!/^-?\d{1,16}$/.test(value)) return 0;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : 0;
}

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
