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

/**
 * Mesh config lines (`services` and `bindings`): api.test (VIP 10.96.9.9:80) served on
 * 127.0.0.1:`upstreamPort`, and its outbound binding `broken` whose misbehave filter `quiet`
 * throws on /quiet. More filter entries of that binding may follow.
 */
export function throwingFilterMesh(upstreamPort: number): string {
  return `services:
  - name: api
    namespace: test
    vip: 10.96.9.9
    ports: [{ port: 80, targetPort: ${upstreamPort}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: broken
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${MISBEHAVE_DIR}
        name: quiet
        config: { tag: quiet, mode: throw, trigger: /quiet }
`;
}

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
