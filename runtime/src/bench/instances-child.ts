/**
 * Child process (started with --expose-gc) measuring one variant's instances: how
 * long a new instance takes from compiled modules, and how much memory each one
 * keeps. A fresh process per variant keeps earlier allocations out of the deltas.
 */
import { configure, loadFactory, memberConfigJson, quietHost } from './factory.js';
import { requestInput } from './inputs.js';
import type { Handler } from './deps.js';
import type { InstanceResult, InstanceTask } from './instances.js';

const gc = (globalThis as { gc?: () => void }).gc;

async function settle(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 4; i++) {
    gc?.();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage();
}

async function measure(task: InstanceTask): Promise<InstanceResult> {
  if (!gc) throw new Error('instances-child needs --expose-gc');
  const { create, compileMs } = await loadFactory(task.load, task.name);
  const host = quietHost(task.name, task.capabilities);
  const config = memberConfigJson(task.schema, 0, task.name);
  const label = `${task.label} instance`;

  // Warm-up: the first instances also pay for glue compilation and lazy V8 work.
  for (let i = 0; i < 3; i++) {
    const h = create(host);
    configure(h, config, label);
    const input = requestInput();
    h.onRequestHeaders(input.ctx, input.request);
  }

  const before = await settle();
  const kept: Handler[] = [];
  const instantiateMs: number[] = [];
  const configureMs: number[] = [];
  const firstCallUs: number[] = [];
  const deadline = performance.now() + task.budgetMs;
  while (kept.length < task.count && performance.now() < deadline) {
    const t0 = performance.now();
    const h = create(host);
    const t1 = performance.now();
    configure(h, config, label);
    const t2 = performance.now();
    const input = requestInput();
    const t3 = performance.now();
    h.onRequestHeaders(input.ctx, input.request);
    const t4 = performance.now();
    instantiateMs.push(t1 - t0);
    configureMs.push(t2 - t1);
    firstCallUs.push((t4 - t3) * 1000);
    kept.push(h);
  }
  const after = await settle();
  const n = kept.length;
  const per = (k: keyof NodeJS.MemoryUsage): number => (after[k] - before[k]) / n;
  const result: InstanceResult = {
    variant: task.variant,
    count: n,
    compileMs,
    instantiateMs,
    configureMs,
    firstCallUs,
    bytesPerInstance: { rss: per('rss'), heapUsed: per('heapUsed'), external: per('external'), arrayBuffers: per('arrayBuffers') },
  };
  return result;
}

process.once('message', (task: InstanceTask) => {
  measure(task).then(
    (r) => process.send!({ ok: true, result: r }, () => process.exit(0)),
    (e: unknown) => process.send!({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }, () => process.exit(1)),
  );
});
