/**
 * Rate-limit state cannot be reset from outside, on each engine with the node's shared table
 * (the C table in a mapped file, `runtime/addon/src/shared-table.c`):
 *
 * - a drained bucket stays drained through 10,000 requests to distinct paths (no choice of keys
 *   evicts it);
 * - the table is sized by the binding's `maxKeys`; new keys past it fail closed (429) and the
 *   filter's `table_full` counter says so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bindingFromArtifact, loadNative, V8Engine, WasmtimeEngine, type FilterEngine } from '@ambit/runtime';
import { loadFilterArtifact, type FilterArtifact } from '@ambit/filter-sdk/host';
import { ctx, request } from './conformance.js';
import { buildBuiltinFilters, builtinDir } from './fixtures.js';

const native = loadNative();
const engines = {
  v8: (sharedDir: string, counters: Map<string, number>) => new V8Engine({ workers: 2, sharedDir, onLog: () => {}, onCounter: (_f, name, d) => counters.set(name, (counters.get(name) ?? 0) + d) }),
  wasmtime: (sharedDir: string, counters: Map<string, number>) => new WasmtimeEngine({ threads: 2, sharedDir, onLog: () => {}, onCounter: (_f, name, d) => counters.set(name, (counters.get(name) ?? 0) + d) }),
};

describe.each(['v8', 'wasmtime'] as const)('rate-limit state on the node table (engine: %s)', (kind) => {
  let dir: string;
  let artifact: FilterArtifact;
  beforeAll(async () => {
    await buildBuiltinFilters();
    artifact = await loadFilterArtifact(builtinDir('ratelimit'));
    dir = await mkdtemp(path.join(os.tmpdir(), `ambit-ratelimit-state-${kind}-`));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function withChain(scope: string, maxKeys: number | undefined, body: (status: (p: string) => Promise<number | 'ok'>, counters: Map<string, number>) => Promise<void>): Promise<void> {
    if (kind === 'wasmtime' && !native.ok) throw new Error(`the wasmtime addon does not load: ${native.reason}`);
    const counters = new Map<string, number>();
    const engine: FilterEngine = engines[kind](dir, counters);
    try {
      const binding = { ...bindingFromArtifact(artifact, { name: 'ratelimit', deadlineMs: 5000, config: { maxTokens: 3, tokensPerFill: 1, fillIntervalMs: 3_600_000, key: { by: 'path' } } }), sharedScope: scope, sharedKeys: maxKeys };
      const chain = await engine.createChain([binding]);
      const status = async (p: string) => {
        const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request(p) });
        return out.action === 'continue' ? 'ok' as const : out.action === 'respond' ? out.response.status : -1;
      };
      await body(status, counters);
      await chain.close();
    } finally {
      await engine.close();
    }
  }

  it('10,000 requests to distinct paths do not refill a drained bucket', async () => {
    await withChain(`flood-${kind}/ratelimit`, undefined, async (status, counters) => {
      const login: Array<number | 'ok'> = [];
      for (let i = 0; i < 4; i++) login.push(await status('/login'));
      expect(login).toEqual(['ok', 'ok', 'ok', 429]);
      const flood: Array<number | 'ok'> = [];
      for (let i = 0; i < 10_000; i += 100) {
        flood.push(...(await Promise.all(Array.from({ length: 100 }, (_, j) => status(`/p/${i + j}`)))));
      }
      expect(await status('/login')).toBe(429);
      const admitted = flood.filter((s) => s === 'ok').length;
      // 4096 keys by default, /login among them: no more paths than that got a bucket.
      expect(admitted).toBeLessThanOrEqual(4095);
      expect(flood.filter((s) => s !== 'ok' && s !== 429)).toEqual([]);
      expect(counters.get('table_full')).toBe(10_000 - admitted);
    });
  });

  it('the table holds the binding\'s maxKeys, then new keys fail closed', async () => {
    await withChain(`small-${kind}/ratelimit`, 50, async (status, counters) => {
      const got: Array<number | 'ok'> = [];
      for (let i = 0; i < 200; i++) got.push(await status(`/q/${i}`));
      const admitted = got.filter((s) => s === 'ok').length;
      expect(admitted).toBeLessThanOrEqual(50);
      expect(admitted).toBeGreaterThan(25);
      expect(counters.get('table_full')).toBe(200 - admitted);
      // Keys already in the table keep their buckets.
      expect(await status('/q/0')).toBe('ok');
    });
  });
});
