/** Builds the test filters once for the whole run, with the real SDK build. */
import { buildFilter } from '@ambit/filter-sdk/build';
import { HELLO_DIR, MISBEHAVE_DIR } from './fixtures.js';

export default async function setup(): Promise<void> {
  await buildFilter({ dir: HELLO_DIR });
  await buildFilter({ dir: MISBEHAVE_DIR });
}
