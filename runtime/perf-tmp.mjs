import { WasmtimeEngine, bindingFromArtifact } from '/work/main/runtime/dist/index.js';
import { loadFilterArtifact } from '/work/main/sdk/dist/host/index.js';
const dirs = process.argv.slice(2);
const engine = new WasmtimeEngine({ threads: 1, onLog: () => {}, onCounter: () => {} });
const ctx = { direction: 'outbound', source: { address: '10.0.0.1', port: 40000, workload: 'web', namespace: 'shop' }, destination: { address: '10.0.0.2', port: 8080, workload: 'api', namespace: 'shop' }, service: 'api.shop', route: 'r', requestId: 'rid-1', attempt: 1 };
const headers = [['host','api.shop'],['user-agent','curl/8'],['accept','*/*'],['x-request-id','rid-1'],['content-type','application/json'],['authorization','Bearer abc'],['x-forwarded-for','10.0.0.1'],['accept-encoding','gzip'],['cookie','a=b'],['x-b3-traceid','1234'],['x-env','prod'],['x-user','alice'],['traceparent','00-abc-def-01'],['x-tenant','t1'],['cache-control','no-cache'],['pragma','no-cache'],['connection','keep-alive'],['content-length','0'],['x-a','1'],['x-b','2']];
const request = { method: 'GET', scheme: 'http', authority: 'api.shop', path: '/products/1', headers };
const bindings = [];
for (const d of dirs) { const a = await loadFilterArtifact(d); bindings.push(bindingFromArtifact(a, { config: {} })); }
const chain = await engine.createChain(bindings);
const req = engine.benchPhase(chain, { phase: 'requestHeaders', ctx, request }, Number(process.env.ITER ?? 5000));
const res = engine.benchPhase(chain, { phase: 'responseHeaders', ctx, request, response: { status: 200, headers: [['content-type','application/json'],['content-length','10']] } }, Number(process.env.ITER ?? 5000));
console.log('request', JSON.stringify(req.phaseUs), 'cpu', JSON.stringify(req.phaseCpuUs), 'outcome', JSON.stringify(req.outcome).slice(0, 200));
console.log('response', JSON.stringify(res.phaseUs), 'cpu', JSON.stringify(res.phaseCpuUs));
await chain.close(); await engine.close?.();
