import { WasmtimeEngine, V8Engine, bindingFromArtifact } from '@ambit/runtime';
import { loadFilterArtifact } from '@ambit/filter-sdk/host';
const mis = await loadFilterArtifact('/work/main/runtime/test/fixtures/misbehave');
const ctx = { direction: 'inbound', source: { address: '1.1.1.1', port: 1 }, destination: { address: '2.2.2.2', port: 2 }, requestId: 'r', attempt: 1 };
for (const [name, e] of [['wasmtime', new WasmtimeEngine({ threads: 2, cacheDir: false, onLog: () => {} })], ['v8', new V8Engine({ workers: 2, onLog: () => {} })]]) {
  for (const inst of ['pooled', 'per-request']) {
    const b = { ...bindingFromArtifact(mis, { config: { tag: 'a' }, name: 'a' }), instances: inst };
    const chain = await e.createChain([b]);
    const bombB = { ...bindingFromArtifact(mis, { config: { tag: 'bomb', mode: 'bomb', trigger: '/bomb' }, name: 'bomb' }), memoryMaxPages: 256, deadlineMs: 5000 };
    const bomb = await e.createChain([bombB]);
    const N = inst === 'per-request' && name === 'v8' ? 50 : 2000;
    const t = [];
    for (let i = 0; i < N; i++) { const t0 = performance.now(); await chain.run({ phase: 'requestHeaders', ctx, request: { method: 'GET', scheme: 'http', authority: 'a', path: '/', headers: [['a','b']] } }); t.push(performance.now() - t0); }
    t.sort((a, b) => a - b);
    const b0 = performance.now();
    const o = await bomb.run({ phase: 'requestHeaders', ctx, request: { method: 'GET', scheme: 'http', authority: 'a', path: '/bomb', headers: [] } });
    console.log(name, inst, 'p50 us', (t[N >> 1] * 1000).toFixed(1), 'p99', (t[Math.floor(N * 0.99)] * 1000).toFixed(1), 'bomb ms', (performance.now() - b0).toFixed(1), o.failures[0]?.kind, o.failures[0]?.message.slice(0, 80));
  }
  await e.close();
}
