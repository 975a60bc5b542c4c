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
 * bytes. Versions come from one counter, so the smallest version in a full bucket is its
 * least recently written entry: the one a new key evicts.
 */
import { threadId } from 'node:worker_threads';
import { AmbitError } from './errors.js';
import type { SharedEntry } from '../abi/types.js';

export const MAX_SHARED_KEY_BYTES = 128;
export const MAX_SHARED_VALUE_BYTES = 256;
export const BUCKET_SLOTS = 8;
/** Default entries per binding: 4096 (about 1.6 MiB). */
export const DEFAULT_SHARED_ENTRIES = 4096;
/** What a lock word holds while this thread owns it: its thread id + 1 (the main thread is 0). */
const OWNER = threadId + 1;

const HEADER_INTS = 4; // [0] version counter
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

  /** A new table for about `entries` entries (rounded up to whole buckets). */
  static create(entries = DEFAULT_SHARED_ENTRIES): SharedTable {
    const buckets = Math.max(1, Math.ceil(entries / BUCKET_SLOTS));
    const size = HEADER_INTS * 4 + buckets * 4 + buckets * BUCKET_SLOTS * SLOT_BYTES;
    return new SharedTable(new SharedArrayBuffer(size));
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
      this.write(slot < 0 ? this.claim(bucket) : slot, k, v);
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
      this.write(slot < 0 ? this.claim(bucket) : slot, k, Buffer.from(String(next)));
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

  /** An empty slot of the bucket, else its least recently written one. */
  private claim(bucket: number): number {
    let oldest = -1;
    let oldestVersion = Number.POSITIVE_INFINITY;
    for (let i = 0; i < BUCKET_SLOTS; i++) {
      const off = this.slotOffset(bucket, i);
      const v = this.meta(off)[0]! >>> 0;
      if (v === 0) return off;
      if (v < oldestVersion) { oldestVersion = v; oldest = off; }
    }
    return oldest;
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
