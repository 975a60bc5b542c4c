/**
 * A fresh instance per request on wasmtime (`probeInstances`, on the bench's thread):
 * instantiate from the pooling allocator (copy-on-write memory image of the
 * pre-initialized guest), then `configure`, then drop, as a `per-request` binding does
 * for every call; and the resident memory each configured instance adds while held.
 */
import { bindingFromArtifact } from '../filters/binding.js';
import type { FilterArtifact, FilterBinding, SampleSummary } from './deps.js';
import { memberConfig } from './inputs.js';
import type { BenchOptions } from './options.js';
import { sampleSummary as times } from './stats.js';
import { openWasmtime } from './wasmtime-phase.js';

export interface InstanceResults {
  count: number;
  instantiateUs: SampleSummary;
  instantiateCpuUs: SampleSummary;
  configureUs: SampleSummary;
  configureCpuUs: SampleSummary;
  /** Instantiate + configure of the same instance: instantiated and ready to call. */
  readyUs: SampleSummary;
  readyCpuUs: SampleSummary;
  rssPerInstanceBytes: number;
  /** The instance's own memory (anonymous pages): written pages, stacks, heaps. */
  privatePerInstanceBytes: number;
}

const sums = (a: number[], b: number[]): number[] => a.slice(0, b.length).map((x, i) => x + b[i]!);

/**
 * Resident memory per configured instance, on an engine that keeps no pages resident:
 * the first probe's held instances land in slots no instance used before, so what the
 * process's RSS grows by is what those instances dirtied (their copy-on-write pages,
 * stacks and heaps). With resident pages kept (the engine's default, for speed) a slot
 * reused later costs no new memory, so RSS cannot tell instances apart there.
 */
async function residentPerInstance(opts: BenchOptions, binding: FilterBinding): Promise<{ rss: number; own: number }> {
  const engine = openWasmtime(opts, 0);
  try {
    const p = await engine.probeInstances(binding, 50);
    return { rss: p.rssPerInstanceBytes, own: p.privatePerInstanceBytes };
  } finally {
    await engine.close();
  }
}

export async function measureInstances(opts: BenchOptions, artifact: FilterArtifact, log: (line: string) => void): Promise<InstanceResults> {
  const binding = bindingFromArtifact(artifact, { config: memberConfig(0) });
  const memory = await residentPerInstance(opts, binding);
  const engine = openWasmtime(opts);
  try {
    await engine.probeInstances(binding, 50);
    const p = await engine.probeInstances(binding, opts.instances);
    const r: InstanceResults = {
      count: p.configureUs.length,
      instantiateUs: times(p.instantiateUs),
      instantiateCpuUs: times(p.instantiateCpuUs),
      configureUs: times(p.configureUs),
      configureCpuUs: times(p.configureCpuUs),
      readyUs: times(sums(p.instantiateUs, p.configureUs)),
      readyCpuUs: times(sums(p.instantiateCpuUs, p.configureCpuUs)),
      rssPerInstanceBytes: memory.rss,
      privatePerInstanceBytes: memory.own,
    };
    log(`instances: ready p50 ${r.readyUs.p50.toFixed(1)} µs (instantiate ${r.instantiateUs.p50.toFixed(1)} + configure ${r.configureUs.p50.toFixed(1)}), ${(r.privatePerInstanceBytes / 2 ** 20).toFixed(3)} MiB own (${(r.rssPerInstanceBytes / 2 ** 20).toFixed(3)} MiB resident) each`);
    return r;
  } finally {
    await engine.close();
  }
}
