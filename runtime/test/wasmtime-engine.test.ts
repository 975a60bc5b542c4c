/**
 * The wasmtime engine: the shared conformance suite, plus what only it offers:
 * epoch deadlines on the calling thread, per-store memory caps, pooled vs per-request
 * instances, and the precompiled cache on disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bindingFromArtifact, chooseEngine, loadNative, WasmtimeEngine, type FilterBinding, type PhaseOutcome } from '@ambit/runtime';
import { ctx, describeEngineConformance, request } from './conformance.js';
import { buildFixtures, type Fixtures } from './fixtures.js';

const native = loadNative();
const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;
// With cargo on this machine the addon must have been built: a failed load is a failure, not a skip.
const skip = !native.ok && !hasCargo ? `the wasmtime addon is not built here and cargo is missing (${native.reason})` : undefined;
// Engines of this file share one precompiled cache, so each component is compiled once.
const sharedCache = path.join(os.tmpdir(), `ambit-wasmtime-test-${process.pid}`);

function header(o: PhaseOutcome, name: string): string | undefined {
  if (o.action !== 'continue') throw new Error(`expected continue, got ${o.action}: ${JSON.stringify(o)}`);
  const op = o.ops.filter((x) => x.tag !== 'remove' && x.val[0] === name).at(-1);
  return op && op.tag !== 'remove' ? op.val[1] : undefined;
}

describe.skipIf(skip !== undefined)(`wasmtime engine${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('loads the native addon', () => {
    expect(native.ok ? 'loaded' : native.reason).toBe('loaded');
  });

  afterAll(async () => {
    await rm(sharedCache, { recursive: true, force: true });
  });

  describeEngineConformance('wasmtime', () => new WasmtimeEngine({ threads: 2, cacheDir: sharedCache, onLog: () => {} }));

  describe('limits, instances and cache', () => {
    let fx: Fixtures;
    let engine: WasmtimeEngine;
    const mis = (config: Record<string, unknown>, extra: Partial<FilterBinding> = {}): FilterBinding => ({
      ...bindingFromArtifact(fx.misbehave, { config, name: `misbehave-${String(config.tag)}` }),
      ...extra,
    });

    beforeAll(async () => {
      fx = await buildFixtures();
      engine = new WasmtimeEngine({ threads: 2, cacheDir: sharedCache, onLog: () => {} });
    });
    afterAll(async () => {
      await engine?.close();
    });

    it('stops a looping call at its deadline on the calling thread; the event loop keeps running meanwhile', async () => {
      const chain = await engine.createChain([mis({ tag: 'spin', mode: 'loop', trigger: '/loop' }, { deadlineMs: 150 })]);
      const order: string[] = [];
      const looping = chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/loop') }).then((o) => { order.push('loop answered'); return o; });
      // A timer set after the call started fires while the filter spins: the call runs off the JavaScript thread.
      await new Promise((r) => setTimeout(r, 20)).then(() => order.push('timer fired'));
      const out = await looping;
      expect(order).toEqual(['timer fired', 'loop answered']);
      expect(out.failures).toMatchObject([{ filter: 'misbehave-spin', kind: 'deadline', message: 'did not return within its 150 ms deadline and was stopped' }]);
      // It was stopped no earlier than its deadline.
      expect(out.calls[0]!.durationMs).toBeGreaterThanOrEqual(150);
      const after = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/fine') });
      expect(header(after, 'x-chain')).toBe('spin');
      await chain.close();
    });

    it('caps memory per binding: the same filter allocates freely under a larger cap', async () => {
      const small = await engine.createChain([mis({ tag: 'bomb', mode: 'bomb', trigger: '/bomb' }, { memoryMaxPages: 200 })]);
      const out = await small.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/bomb') });
      expect(out.failures).toMatchObject([{ filter: 'misbehave-bomb', kind: 'trap' }]);
      expect(out.action).toBe('respond');
      await small.close();
    });

    it('recycles a trapped instance: the next call gets a fresh one', async () => {
      const chain = await engine.createChain([mis({ tag: 'thrower', mode: 'throw', trigger: '/throw' })]);
      const first = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/ok') });
      expect(header(first, 'x-calls-thrower')).toBe('1');
      const second = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/ok') });
      expect(header(second, 'x-calls-thrower')).toBe('2');
      const trap = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/throw') });
      expect(trap.failures[0]).toMatchObject({ kind: 'trap', message: expect.stringContaining('misbehave thrower throws on purpose') });
      // A new instance starts counting from 1 again.
      const next = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/ok') });
      expect(header(next, 'x-calls-thrower')).toBe('1');
      await chain.close();
    });

    it('per-request instances share nothing: a global call counter reads 1 every time; pooled counts up', async () => {
      const perRequest = await engine.createChain([mis({ tag: 'iso' }, { instances: 'per-request' })]);
      const pooled = await engine.createChain([mis({ tag: 'warm' })]);
      const iso: Array<string | undefined> = [];
      const warm: Array<string | undefined> = [];
      for (let i = 0; i < 6; i++) {
        iso.push(header(await perRequest.run({ phase: 'requestHeaders', ctx: ctx(), request: request(`/r/${i}`) }), 'x-calls-iso'));
        warm.push(header(await pooled.run({ phase: 'requestHeaders', ctx: ctx(), request: request(`/r/${i}`) }), 'x-calls-warm'));
      }
      expect(iso).toEqual(['1', '1', '1', '1', '1', '1']);
      expect(warm).toEqual(['1', '2', '3', '4', '5', '6']);
      // Concurrent per-request calls also each see a fresh instance.
      const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => perRequest.run({ phase: 'requestHeaders', ctx: ctx(), request: request(`/b/${i}`) })));
      expect(burst.map((o) => header(o, 'x-calls-iso'))).toEqual(Array(20).fill('1'));
      const info = engine.info() as { filters: Record<string, { name: string; instantiations: number }> };
      const isoInfo = Object.values(info.filters).find((f) => f.name === 'misbehave-iso');
      // One instance at load (to configure and learn the phases), then one per call.
      expect(isoInfo?.instantiations).toBe(1 + 6 + 20);
      await perRequest.close();
      await pooled.close();
    });

    it('refuses a memory cap above what the engine reserves, saying which setting to change', async () => {
      await expect(engine.createChain([mis({ tag: 'huge' }, { memoryMaxPages: 20_000 })])).rejects.toMatchObject({
        code: 'AMBIT_ERR_MEMORY_CAP',
        message: expect.stringContaining('maxMemoryPages'),
      });
    });
  });

  describe('precompiled cache', () => {
    let fx: Fixtures;
    let dir: string;

    beforeAll(async () => {
      fx = await buildFixtures();
      dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-wasmtime-cache-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    async function loadOnce(): Promise<{ cache: string; out: PhaseOutcome }> {
      const engine = new WasmtimeEngine({ threads: 1, cacheDir: dir, onLog: () => {} });
      try {
        const chain = await engine.createChain([bindingFromArtifact(fx.hello, { config: {} })]);
        const out = await chain.run({ phase: 'requestHeaders', ctx: ctx(), request: request('/x') });
        const info = engine.info() as { filters: Record<string, { cache: string }> };
        return { cache: Object.values(info.filters)[0]!.cache, out };
      } finally {
        await engine.close();
      }
    }

    async function entry(): Promise<{ artifact: string; sum: string }> {
      const [engineDir] = await readdir(path.join(dir, 'wasmtime'));
      const base = path.join(dir, 'wasmtime', engineDir!, `${fx.hello.sha256}.cwasm`);
      return { artifact: base, sum: `${base}.sha256` };
    }

    it('compiles once, then loads the artifact; a corrupted or unverifiable entry is rebuilt, never loaded', async () => {
      const first = await loadOnce();
      expect(first.cache).toBe('miss');
      expect(first.out.action).toBe('continue');
      expect((await loadOnce()).cache).toBe('hit');

      const { artifact, sum } = await entry();
      const bytes = await readFile(artifact);
      // Flip bytes in the middle of the compiled code.
      for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i] ^= 0xff;
      await writeFile(artifact, bytes);
      const corrupted = await loadOnce();
      expect(corrupted.cache).toMatch(/^rebuilt: checksum mismatch/);
      expect(corrupted.out.action).toBe('continue');
      expect((await loadOnce()).cache).toBe('hit');

      await rm(sum);
      expect((await loadOnce()).cache).toMatch(/^rebuilt: checksum file missing/);

      // A wrong artifact with a matching checksum (written by hand) is refused by wasmtime.
      const junk = Buffer.from('not a wasmtime artifact');
      await writeFile(artifact, junk);
      const { createHash } = await import('node:crypto');
      await writeFile(sum, createHash('sha256').update(junk).digest('hex'));
      expect((await loadOnce()).cache).toMatch(/^rebuilt: refused by wasmtime/);
      expect((await loadOnce()).cache).toBe('hit');
    });
  });

  it('is what engine: auto picks when the addon loads', async () => {
    const lines: string[] = [];
    const engine = chooseEngine('auto', { say: (l) => lines.push(l), onLog: () => {} });
    try {
      expect(engine.kind).toBe('wasmtime');
      expect(lines[0]).toMatch(/^filter engine: wasmtime \d+\.\d+\.\d+ \(engine: auto\)$/);
      expect(engine.info()).toMatchObject({ wasmtime: expect.any(String), threads: expect.any(Number) });
    } finally {
      await engine.close();
    }
  });
});
