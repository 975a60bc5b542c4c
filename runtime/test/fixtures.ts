/**
 * The test filters. `global-setup.ts` builds them once per test run with the real SDK
 * build; a test file run on its own builds them here.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFilter, buildStaleness } from '@ambit/filter-sdk/build';
import { loadFilterArtifact, type FilterArtifact } from '@ambit/filter-sdk/host';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const HELLO_DIR = path.join(REPO, 'examples/filters/hello');
export const MISBEHAVE_DIR = path.join(here, 'fixtures/misbehave');

export interface Fixtures {
  hello: FilterArtifact;
  misbehave: FilterArtifact;
}

let built: Promise<Fixtures> | undefined;

export function buildFixtures(): Promise<Fixtures> {
  built ??= (async () => {
    for (const dir of [HELLO_DIR, MISBEHAVE_DIR]) {
      if (!existsSync(path.join(dir, 'dist/manifest.json')) || process.env.AMBIT_TEST_REBUILD) await buildFilter({ dir });
    }
    return { hello: await loadFilterArtifact(HELLO_DIR), misbehave: await loadFilterArtifact(MISBEHAVE_DIR) };
  })();
  return built;
}

/** The built-in filters (`filters/<name>`) the proxy tests and the benchmark run. */
export const BUILTIN_FILTERS = ['authz', 'ratelimit', 'fault', 'traffic-split', 'headers', 'retry'] as const;
export type BuiltinFilter = (typeof BUILTIN_FILTERS)[number];
export const builtinDir = (name: BuiltinFilter | 'mtls'): string => path.join(REPO, 'filters', name);

/** Builds a filter package unless its dist is newer than its source and the SDK (what `ambit-filter build --if-stale` checks). */
export async function buildIfStale(dir: string): Promise<void> {
  if (process.env.AMBIT_TEST_REBUILD || (await buildStaleness(dir)) !== undefined) await buildFilter({ dir });
}

let builtins: Promise<void> | undefined;

export function buildBuiltinFilters(): Promise<void> {
  builtins ??= (async () => {
    for (const name of BUILTIN_FILTERS) await buildIfStale(builtinDir(name));
  })();
  return builtins;
}
