/**
 * The ambit:filter@0.2.0 world on the V8 engine (`conformance-world.ts`; wasmtime runs the
 * same suite in `wasmtime-world.test.ts`), and how the V8 engine binds a component.
 */
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '@ambit/filter-sdk/host';
import { V8Engine } from '@ambit/runtime';
import { probeComponent } from '../../sdk/test/fixtures/probe.js';
import { describeWorldConformance } from './conformance-world.js';

describeWorldConformance('v8', () => new V8Engine({ workers: 2, onLog: () => {} }));

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
