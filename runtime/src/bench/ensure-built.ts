/** Builds a filter package (with the SDK's build) when its dist/ is missing or unreadable. */
import path from 'node:path';
import { buildFilter } from '@ambit/filter-sdk/build';
import { loadFilterArtifact } from './deps.js';

export async function ensureBuilt(dir: string, log: (s: string) => void): Promise<void> {
  try {
    await loadFilterArtifact(dir);
  } catch {
    log(`building ${path.relative(process.cwd(), dir) || dir}`);
    await buildFilter({ dir });
  }
}
