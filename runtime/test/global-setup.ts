/** Builds the test filters (and the built-in filters) once for the whole run, with the real SDK build. */
import { buildFilter } from '@ambit/filter-sdk/build';
import { HELLO_DIR, MISBEHAVE_DIR, buildBuiltinFilters } from './fixtures.js';

export default async function setup(): Promise<void> {
  await buildFilter({ dir: HELLO_DIR });
  await buildFilter({ dir: MISBEHAVE_DIR });
  // The built-in filters (filters/*): rebuilt when their source or the SDK changed.
  await buildBuiltinFilters();
}
