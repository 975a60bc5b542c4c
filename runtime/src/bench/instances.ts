/**
 * Sections 2 and 3: instance creation time and memory per instance, one child
 * process per variant (see instances-child.ts).
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Capability } from './deps.js';
import type { LoadSpec } from './factory.js';
import type { BenchOptions } from './options.js';
import { summarize, type Summary } from './stats.js';
import type { Variant, VariantId } from './variants.js';

export interface InstanceTask {
  variant: VariantId;
  label: string;
  name: string;
  capabilities: Capability[];
  schema: object | undefined;
  load: LoadSpec;
  count: number;
  budgetMs: number;
}

export interface InstanceResult {
  variant: VariantId;
  count: number;
  compileMs: number;
  instantiateMs: number[];
  configureMs: number[];
  firstCallUs: number[];
  /** process.memoryUsage() deltas after GC, divided by `count`. */
  bytesPerInstance: { rss: number; heapUsed: number; external: number; arrayBuffers: number };
}

export interface InstanceRow {
  variant: VariantId;
  /** Instances created and kept. */
  count: number;
  componentBytes: number | undefined;
  /** Compiling the core modules, once per component (shared by all instances). */
  compileMs: number;
  /** New instance from compiled modules (instantiate + the guest's start-up). */
  instantiateMs: Summary;
  /** `configure(config)` on the new instance. */
  configureMs: Summary;
  /** First `onRequestHeaders` call on the new instance. */
  firstCallUs: Summary;
  bytesPerInstance: InstanceResult['bytesPerInstance'];
}

const CHILD = fileURLToPath(new URL('./instances-child.js', import.meta.url));
const CHILD_TIMEOUT_MS = 60_000;

function runChild(task: InstanceTask): Promise<InstanceResult> {
  return new Promise((resolve, reject) => {
    const child = fork(CHILD, [], { execArgv: ['--expose-gc'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${task.label}: instance measurement did not finish in ${CHILD_TIMEOUT_MS / 1000} s`)); }, CHILD_TIMEOUT_MS);
    child.once('message', (m: { ok: true; result: InstanceResult } | { ok: false; error: string }) => {
      clearTimeout(timer);
      if (m.ok) resolve(m.result);
      else reject(new Error(`${task.label}: instance measurement failed: ${m.error}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${task.label}: instance measurement process exited with ${code}`));
    });
    child.send(task);
  });
}

export async function measureInstances(opts: BenchOptions, variants: Variant[], log: (line: string) => void): Promise<InstanceRow[]> {
  const rows: InstanceRow[] = [];
  for (const v of variants) {
    const r = await runChild({
      variant: v.id, label: v.label, name: v.name, capabilities: v.capabilities, schema: v.schema,
      load: v.load, count: opts.instances, budgetMs: opts.instancesBudgetMs,
    });
    const row: InstanceRow = {
      variant: v.id,
      count: r.count,
      componentBytes: v.componentBytes,
      compileMs: r.compileMs,
      instantiateMs: summarize(r.instantiateMs),
      configureMs: summarize(r.configureMs),
      firstCallUs: summarize(r.firstCallUs),
      bytesPerInstance: r.bytesPerInstance,
    };
    rows.push(row);
    log(`instances ${v.label.padEnd(18)} ${r.count} kept: instantiate p50 ${row.instantiateMs.p50.toFixed(2)} ms, ${(row.bytesPerInstance.rss / 2 ** 20).toFixed(2)} MiB RSS each`);
  }
  return rows;
}
