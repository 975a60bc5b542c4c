/**
 * The test filters. `global-setup.ts` builds them once per test run with the real SDK
 * build; a test file run on its own builds them here.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFilter } from '@ambit/filter-sdk/build';
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

/** Builds a filter package unless its dist is newer than its source and the SDK's guest side. */
export async function buildIfStale(dir: string): Promise<void> {
  const wasm = path.join(dir, 'dist/filter.wasm');
  if (!existsSync(wasm) || process.env.AMBIT_TEST_REBUILD) return void (await buildFilter({ dir }));
  const built = statSync(wasm).mtimeMs;
  // The filter's source, and everything of the SDK that goes into a build: the guest
  // runtime, the build step, the engine module and the world.
  const guest = path.join(REPO, 'sdk/dist/guest');
  const inputs = [
    path.join(dir, 'src/filter.ts'), path.join(REPO, 'sdk/dist/guest-index.js'), path.join(REPO, 'sdk/wit/filter.wit'),
    path.join(REPO, 'sdk/engine/quickjs.wasm'), path.join(REPO, 'sdk/dist/build/build.js'),
    ...(existsSync(guest) ? readdirSync(guest).filter((f) => f.endsWith('.js')).map((f) => path.join(guest, f)) : []),
  ];
  if (inputs.some((f) => existsSync(f) && statSync(f).mtimeMs > built)) await buildFilter({ dir });
}

let builtins: Promise<void> | undefined;

export function buildBuiltinFilters(): Promise<void> {
  builtins ??= (async () => {
    for (const name of BUILTIN_FILTERS) await buildIfStale(builtinDir(name));
  })();
  return builtins;
}
