/**
 * The ambit:filter@0.2.0 world on both engines (`conformance-world.ts`), and how the V8
 * engine binds a component.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '@ambit/filter-sdk/host';
import { loadNative, V8Engine, WasmtimeEngine } from '@ambit/runtime';
import { probeComponent } from '../../sdk/test/fixtures/probe.js';
import { describeWorldConformance } from './conformance-world.js';

describeWorldConformance('v8', () => new V8Engine({ workers: 2, onLog: () => {} }));

const native = loadNative();
const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;
// With cargo on this machine the addon must have been built: a failed load is a failure, not a skip.
describe.skipIf(!native.ok && !hasCargo)('on wasmtime', () => {
  describeWorldConformance('wasmtime', () => new WasmtimeEngine({ threads: 2, onLog: () => {} }));
});

describe('V8 engine bindings', () => {
  it('binds a component of one core module directly, and says so in its info', async () => {
    const engine = new V8Engine({ workers: 1, onLog: () => {} });
    try {
      const wasm = await probeComponent();
      const chain = await engine.createChain([{ name: 'p', wasm, sha256: sha256Hex(wasm), capabilities: ['log'], config: {} }]);
      expect(engine.info()['bindings']).toEqual({ p: 'direct' });
      await chain.close();
    } finally {
      await engine.close();
    }
  });
});
