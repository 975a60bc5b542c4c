import { parseOptions } from './dist/bench/options.js';
import { prepareVariants } from './dist/bench/variants.js';
import { loadFactory } from './dist/bench/factory.js';
import { createRawChain } from './dist/bench/raw.js';
import { requestInput } from './dist/bench/inputs.js';
const opts = parseOptions([]);
const variants = await prepareVariants(opts, () => {});
const v = variants.find((x) => x.id === (process.env.V ?? 'quickjs'));
const { create } = await loadFactory(v.load, v.name);
const c1 = createRawChain(v, create, 1); const h = c1.handlers[0];
for (let i = 0; i < 3000; i++) { const inp = requestInput(); h.onRequestHeaders(inp.ctx, inp.request); }
const N = 10000; const s = new Float64Array(N);
for (let i = 0; i < N; i++) { const inp = requestInput(); const t0 = performance.now(); h.onRequestHeaders(inp.ctx, inp.request); s[i] = (performance.now() - t0) * 1000; }
const sorted = Float64Array.from(s).sort();
const mean = s.reduce((a, b) => a + b) / N;
console.log('mean', mean.toFixed(1), 'p10', sorted[N * 0.1].toFixed(1), 'p50', sorted[N / 2].toFixed(1), 'p75', sorted[N * 0.75].toFixed(1), 'p90', sorted[N * 0.9].toFixed(1), 'p99', sorted[N * 0.99].toFixed(1));
// slow-call periodicity
const slow = []; for (let i = 0; i < N; i++) if (s[i] > sorted[N / 2] * 1.5) slow.push(i);
console.log('slow count', slow.length, 'first gaps', slow.slice(0, 30).map((x, i) => i ? x - slow[i - 1] : x).join(','));
console.log('first 40 samples', Array.from(s.slice(0, 40), (x) => x.toFixed(0)).join(' '));
