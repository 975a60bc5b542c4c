/** Builds the test filters with the real SDK build, once per test process. */
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
    await buildFilter({ dir: HELLO_DIR });
    await buildFilter({ dir: MISBEHAVE_DIR });
    return { hello: await loadFilterArtifact(HELLO_DIR), misbehave: await loadFilterArtifact(MISBEHAVE_DIR) };
  })();
  return built;
}
