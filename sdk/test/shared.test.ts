/**
 * The shared table behind the `shared` capability, hammered from real worker threads:
 * adds and compare-and-set loops must lose nothing.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { AmbitError, SharedTable, MAX_SHARED_KEY_BYTES, MAX_SHARED_VALUE_BYTES } from '@ambit/filter-sdk/host';

/** Runs `ops` adds and `ops` CAS increments on one key, in each of `threads` workers. */
function hammer(buffer: SharedArrayBuffer, threads: number, ops: number): Promise<void> {
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import(workerData.url).then(({ SharedTable }) => {
      const t = new SharedTable(workerData.buffer);
      for (let i = 0; i < workerData.ops; i++) {
        t.add('adds', 1);
        for (;;) {
          const cur = t.get('cas');
          const next = String(Number(cur ? cur.value : '0') + 1);
          if (t.set('cas', next, cur ? cur.version : 0)) break;
        }
      }
      parentPort.postMessage('done');
    });`;
  const url = new URL('../dist/host/index.js', import.meta.url).href;
  return Promise.all(Array.from({ length: threads }, () => new Promise<void>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { buffer, ops, url } });
    w.once('message', () => { void w.terminate(); resolve(); });
    w.once('error', reject);
  }))).then(() => undefined);
}

describe('SharedTable', () => {
  it('get / compare-and-set / add', () => {
    const t = SharedTable.create(64);
    expect(t.get('k')).toBeUndefined();
    expect(t.set('k', 'a', 1)).toBe(false); // not absent-version
    expect(t.set('k', 'a', 0)).toBe(true);
    const e = t.get('k')!;
    expect(e.value).toBe('a');
    expect(e.version).toBeGreaterThan(0);
    expect(t.set('k', 'b', 0)).toBe(false); // present now
    expect(t.set('k', 'b', e.version)).toBe(true);
    expect(t.set('k', 'c', e.version)).toBe(false); // stale version
    expect(t.get('k')!.value).toBe('b');
    expect(t.add('n', 5)).toBe(5);
    expect(t.add('n', -2)).toBe(3);
    expect(t.add('k', 1)).toBe(1); // not an integer: counts from 0
  });

  it('is shared with another SharedTable over the same buffer', () => {
    const a = SharedTable.create(64);
    const b = new SharedTable(a.buffer);
    a.set('x', 'hello', 0);
    expect(b.get('x')?.value).toBe('hello');
  });

  it('never evicts a live entry: a new key past maxKeys is refused; only expired entries give way', () => {
    const t = SharedTable.create(8);
    for (let i = 0; i < 8; i++) expect(t.set(`k${i}`, String(i), 0)).toBe(true);
    // Full: the new key is not stored (false, and still absent), and nothing was pushed out.
    expect(t.set('k8', '8', 0)).toBe(false);
    expect(t.get('k8')).toBeUndefined();
    expect(() => t.add('k9', 1)).toThrow(expect.objectContaining({ code: 'AMBIT_ERR_SHARED_FULL' }));
    for (let i = 0; i < 8; i++) expect(t.get(`k${i}`)?.value).toBe(String(i));
    // An entry whose value says it expired (`~<ms>:`) gives its place; one not yet expired does not.
    t.set('k1', `~${Date.now() - 1}:gone`, t.get('k1')!.version);
    t.set('k2', `~${Date.now() + 60_000}:kept`, t.get('k2')!.version);
    expect(t.set('k8', '8', 0)).toBe(true);
    expect(t.get('k8')?.value).toBe('8');
    expect(t.get('k2')?.value).toContain('kept');
    expect(t.set('k10', 'x', 0)).toBe(false);
  });

  it('refuses oversized keys and values with a coded error', () => {
    const t = SharedTable.create(8);
    expect(() => t.set('k'.repeat(MAX_SHARED_KEY_BYTES + 1), 'v', 0)).toThrow(AmbitError);
    expect(() => t.set('', 'v', 0)).toThrow(/1 to 128 bytes/);
    expect(() => t.set('k', 'v'.repeat(MAX_SHARED_VALUE_BYTES + 1), 0)).toThrow(/at most 256 bytes/);
  });

  it('loses no update under contention from 4 threads', async () => {
    const t = SharedTable.create(64);
    await hammer(t.buffer, 4, 5000);
    expect(Number(t.get('adds')!.value)).toBe(20000);
    expect(Number(t.get('cas')!.value)).toBe(20000);
  });
});
