/**
 * The filter ABI section of `npm run bench`: the measured filter's request phase on
 * both worlds and both engines (`hello.ts`), the six built-ins on wasmtime
 * (`builtins-wasmtime.ts`), a fresh wasmtime instance and its memory (`instances.ts`),
 * whether fusing a chain would pay (`entries.ts`, `fusion.ts`), what separate copies of
 * the engine code cost a chain (`code-sharing.ts`), against the goals
 * (`goals.ts`), with the machine's load while it ran.
 */
import { buildCopy } from './builds.js';
import { measureCodeSharing, type CodeSharingRow } from './code-sharing.js';
import { measureBuiltins, type BuiltinRow } from './builtins-wasmtime.js';
import { loadFilterArtifact } from './deps.js';
import { measureEntries, type EntryRow } from './entries.js';
import { fusion, type Fusion } from './fusion.js';
import { goals, type Goal } from './goals.js';
import { measureHello, type HelloResults } from './hello.js';
import { measureInstances, type InstanceResults } from './instances.js';
import { cpuSnapshot, otherCores, sampleOtherCores } from './machine-load.js';
import { BUSY_CORES, type RunMeta } from './meta.js';
import type { BenchOptions } from './options.js';

export interface AbiResults {
  hello: HelloResults;
  builtins: BuiltinRow[];
  instances: InstanceResults;
  /** The no-op filter's request phase on wasmtime, 1 and N instances. */
  entries: EntryRow[];
  fusion: Fusion[];
  /** A chain of one filter's instances vs of separately compiled copies of it. */
  codeSharing: CodeSharingRow[];
  goals: Goal[];
}

export async function measureAbi(opts: BenchOptions, meta: RunMeta, log: (line: string) => void): Promise<AbiResults> {
  const artifact = await loadFilterArtifact(await buildCopy(opts, opts.filterDir, log));
  meta.otherCores.before = await sampleOtherCores(1000);
  if (meta.otherCores.before > BUSY_CORES) {
    log(`warning: other processes are using ${meta.otherCores.before.toFixed(1)} of ${meta.cores} cores; they will skew wall times (CPU times less so)`);
  }
  const start = cpuSnapshot();
  const hello = await measureHello(opts, artifact, log);
  const builtins = await measureBuiltins(opts, log);
  const instances = await measureInstances(opts, artifact, log);
  const entries = await measureEntries(opts, log);
  const codeSharing = await measureCodeSharing(opts, log);
  meta.otherCores.during = otherCores(start, cpuSnapshot());
  // On wasmtime, the engine of the native data path: the no-op filter is measured there.
  const fused = [fusion(hello.rows, 'wasmtime-0.2', opts.longChain, entries)].filter((f): f is Fusion => f !== undefined);
  return { hello, builtins, instances, entries, fusion: fused, codeSharing, goals: goals(hello.rows, builtins, instances) };
}
