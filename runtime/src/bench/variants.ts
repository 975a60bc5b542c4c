/**
 * The three things measured side by side: the filter built with QuickJS, the same
 * filter built with StarlingMonkey, and the same bundle as plain JS (the baseline).
 */
import { statSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { loadFilterArtifact, prepareComponent, type Capability } from './deps.js';
import { buildCopy } from './builds.js';
import type { LoadSpec } from './factory.js';
import type { BenchOptions } from './options.js';
import { writeStandInComponent } from './plain-component.js';
import { writePlainJsModule } from './plain-js.js';

export type VariantId = 'plain' | 'quickjs' | 'starlingmonkey';

export interface Variant {
  id: VariantId;
  label: string;
  /** Filter name (as bound). */
  name: string;
  capabilities: Capability[];
  schema: object | undefined;
  /** What the V8 engine is given: the component, or the plain-JS stand-in. */
  wasm: Uint8Array;
  sha256: string;
  /** Size of the real component (undefined for plain JS). */
  componentBytes: number | undefined;
  /** Size of the JavaScript bundle inside. */
  bundleBytes: number;
  load: LoadSpec;
}

export const VARIANT_LABELS: Record<VariantId, string> = {
  plain: 'plain JS (no Wasm)',
  quickjs: 'QuickJS',
  starlingmonkey: 'StarlingMonkey',
};

interface Built {
  variant: Variant;
  /** The built copy of the filter package. */
  dir: string;
  /** Where jco's output for this component sits in the bench's cache. */
  transpiledDir: string;
}

async function wasmVariant(opts: BenchOptions, engine: 'quickjs' | 'starlingmonkey', log: (line: string) => void): Promise<Built> {
  const dir = await buildCopy(opts, engine, log);
  const artifact = await loadFilterArtifact(dir);
  const t0 = performance.now();
  const prepared = await prepareComponent(artifact.wasm, { label: artifact.origin, cacheDir: engineCacheDir(opts) });
  const ms = performance.now() - t0;
  if (ms > 500) log(`${engine}: transpiled with jco in ${(ms / 1000).toFixed(1)} s`);
  const variant: Variant = {
    id: engine,
    label: VARIANT_LABELS[engine],
    name: artifact.name,
    capabilities: artifact.capabilities,
    schema: artifact.schema,
    wasm: artifact.wasm,
    sha256: artifact.sha256,
    componentBytes: artifact.wasm.length,
    bundleBytes: statSync(path.join(dir, 'dist', 'filter.bundle.js')).size,
    load: { kind: 'wasm', prepared },
  };
  return { variant, dir, transpiledDir: prepared.dir };
}

export interface PreparedVariants {
  variants: Variant[];
  /** Variants left out, with why (e.g. a StarlingMonkey build that failed). */
  skipped: Array<{ id: VariantId; reason: string }>;
}

export async function prepareVariants(opts: BenchOptions, log: (line: string) => void): Promise<PreparedVariants> {
  const skipped: PreparedVariants['skipped'] = [];
  // One after the other: a StarlingMonkey build peaks near 800 MB.
  const quickjs = await wasmVariant(opts, 'quickjs', log);
  let starlingmonkey: Built | undefined;
  try {
    starlingmonkey = await wasmVariant(opts, 'starlingmonkey', log);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    log(`starlingmonkey: left out of this run: ${reason}`);
    skipped.push({ id: 'starlingmonkey', reason });
  }
  // The baseline runs the QuickJS build's bundle (the StarlingMonkey one differs only in how it imports the host).
  const plainModule = await writePlainJsModule(quickjs.dir, path.join(opts.workDir, 'plain-js'));
  const standIn = await writeStandInComponent(plainModule, quickjs.transpiledDir);
  const plain: Variant = {
    ...quickjs.variant,
    id: 'plain',
    label: VARIANT_LABELS.plain,
    wasm: standIn.wasm,
    sha256: standIn.sha256,
    componentBytes: undefined,
    load: { kind: 'js', factoryPath: plainModule.path },
  };
  const variants = [plain, quickjs.variant, ...(starlingmonkey ? [starlingmonkey.variant] : [])];
  await pruneCache(path.dirname(quickjs.transpiledDir), variants.map((v) => v.sha256));
  return { variants, skipped };
}

/** Drops transpiled components of earlier runs from the bench's own jco cache. */
async function pruneCache(dir: string, keep: string[]): Promise<void> {
  for (const name of await readdir(dir)) {
    if (/^[0-9a-f]{64}$/.test(name) && !keep.includes(name)) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Cache folder the V8 engine must use so it finds the stand-in component. */
export function engineCacheDir(opts: BenchOptions): string {
  return path.join(opts.workDir, 'jco-cache');
}
