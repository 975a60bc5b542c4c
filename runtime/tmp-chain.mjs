import { parseOptions } from './dist/bench/options.js';
import { prepareVariants } from './dist/bench/variants.js';
import { loadFactory } from './dist/bench/factory.js';
import { createRawChain } from './dist/bench/raw.js';
import { requestInput } from './dist/bench/inputs.js';
import { runPhase } from './dist/filters/chain.js';
const opts = parseOptions([]);
const variants = await prepareVariants(opts, () => {});
const v = variants.find((x) => x.id === (process.env.V ?? 'quickjs'));
const { create } = await loadFactory(v.load, v.name);
const c1 = createRawChain(v, create, 1), c5 = createRawChain(v, create, 5);
const hs = c5.handlers;
const subjects = {
  chain1: () => { const inp = requestInput(); runPhase(c1.members, inp, (i, x) => c1.handlers[i].onRequestHeaders(x.ctx, x.request)); },
  chain5: () => { const inp = requestInput(); runPhase(c5.members, inp, (i, x) => c5.handlers[i].onRequestHeaders(x.ctx, x.request)); },
  distinct5fresh: () => { for (let i = 0; i < 5; i++) { const inp = requestInput(); hs[i].onRequestHeaders(inp.ctx, inp.request); } },
  same5fresh: () => { for (let i = 0; i < 5; i++) { const inp = requestInput(); hs[0].onRequestHeaders(inp.ctx, inp.request); } },
  distinct5shared: () => { const inp = requestInput(); for (let i = 0; i < 5; i++) hs[i].onRequestHeaders(inp.ctx, inp.request); },
};
const res = Object.fromEntries(Object.keys(subjects).map((k) => [k, []]));
for (let r = 0; r < 7; r++) for (const [k, f] of Object.entries(subjects)) {
  for (let i = 0; i < 30; i++) f();
  const t0 = performance.now(); const N = 300;
  for (let i = 0; i < N; i++) f();
  res[k].push((performance.now() - t0) * 1000 / N);
}
for (const [k, x] of Object.entries(res)) { x.sort((a, b) => a - b); console.log(k.padEnd(16), 'min', x[0].toFixed(1), 'med', x[3].toFixed(1)); }
