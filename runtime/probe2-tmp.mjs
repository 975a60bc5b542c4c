import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
const keep = setInterval(() => {}, 1000);
const native = createRequire(import.meta.url)('@ambit/native');
const wasm = readFileSync('/work/main/examples/filters/hello/dist/filter.wasm');
for (const opts of [{ tableElements: 100000 }, { tableElements: 5000 }, { tableElements: 5000, maxInstances: 50, maxMemoryPages: 2048 }]) {
  const pending = new Map();
  const eng = new native.NativeEngine(JSON.stringify({ threads: 1, cacheDir: '/tmp/ambit-perf-cache', ...opts }), (job, res) => pending.get(job)(res));
  const res = await new Promise((r) => { pending.set(1, r); eng.loadFilter(1, 1, wasm, JSON.stringify({ name: 'hello', sha256: '', capabilities: ['log', 'counters'], config: '{}', memoryMaxPages: 1024, deadlineMs: 50, failurePolicy: 'fail-closed', instances: 'pooled' })); });
  const p = JSON.parse(eng.probeInstances(1, 500));
  const q = (a, f) => a.slice().sort((x, y) => x - y)[Math.floor(a.length * f)].toFixed(1);
  console.log(JSON.stringify(opts), res.slice(0, 60), 'inst cpu p50', q(p.instantiateCpuUs, .5), 'conf cpu', q(p.configureCpuUs, .5));
  eng.close();
}
clearInterval(keep);
