import { WasmtimeEngine } from '/work/main/runtime/dist/index.js';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
const native = createRequire(import.meta.url)('@ambit/native');
const engineWasm = readFileSync('/work/main/sdk/engine/quickjs.wasm');
const variants = {
  raw: `globalThis.__ambitHandler = { configure() { return { name: 'raw', phases: 6 }; }, onConnection() {}, onRequest(c, r) {}, onResponse() {} };`,
  objs: `class V { #a; #b; constructor(n, h) { this.#a = n; this.#b = h; } } class C { #a; #b; #c; #d; #e; #f; #g; #h; constructor(n, h, c) { this.#a = n; this.#b = h; this.config = c; } }
    globalThis.__ambitHandler = { configure() { return { name: 'objs', phases: 6 }; }, onConnection() {}, onRequest(c, r) { new V(1, r); new C(1, c, 2); }, onResponse() {} };`,
  get: `const A = globalThis.__ambit; globalThis.__ambitHandler = { configure() { return { name: 'get', phases: 6 }; }, onConnection() {}, onRequest(c, r) { A.reqGet(r, 'user-agent'); }, onResponse() {} };`,
  set: `const A = globalThis.__ambit; globalThis.__ambitHandler = { configure() { return { name: 'set', phases: 6 }; }, onConnection() {}, onRequest(c, r) { A.reqSet(r, 'x-a', 'b'); }, onResponse() {} };`,
  peer: `const A = globalThis.__ambit; globalThis.__ambitHandler = { configure() { return { name: 'peer', phases: 6 }; }, onConnection() {}, onRequest(c, r) { A.ctxSource(c); }, onResponse() {} };`,
};
const engine = new WasmtimeEngine({ threads: 1, onLog: () => {}, onCounter: () => {} });
const ctx = { direction: 'outbound', source: { address: '10.0.0.1', port: 40000, workload: 'web', namespace: 'shop' }, destination: { address: '10.0.0.2', port: 8080 }, service: 'api.shop', route: 'r', requestId: 'rid-1', attempt: 1 };
const headers = Array.from({ length: 20 }, (_, i) => [`x-h${i}`, `value-${i}`]); headers.push(['user-agent', 'curl/8']);
const request = { method: 'GET', scheme: 'http', authority: 'api.shop', path: '/products/1', headers };
for (const [name, src] of Object.entries(variants)) {
  const wasm = native.buildGuest(engineWasm, src, 'filter.js', '/work/main/sdk/wit', 'filter');
  const chain = await engine.createChain([{ name, wasm: new Uint8Array(wasm), sha256: createHash('sha256').update(wasm).digest('hex'), capabilities: [], config: {} }]);
  const r = engine.benchPhase(chain, { phase: 'requestHeaders', ctx, request }, 20000);
  console.log(name.padEnd(6), 'cpu p50', r.phaseCpuUs.p50.toFixed(2), 'wall p50', r.phaseUs.p50.toFixed(2), 'call', (r.outcome.calls[0].durationMs * 1000).toFixed(2));
  await chain.close();
}
