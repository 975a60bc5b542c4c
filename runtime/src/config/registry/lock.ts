/**
 * The lock file of resolved filter versions (`ambit-filters.lock.json` beside the mesh
 * config), in the spirit of package-lock.json: for each npm ref as the config writes it,
 * the exact version, tarball URL and integrity it resolved to, and what was verified.
 * A node that has the lock resolves every ref without asking the registry for versions,
 * and with a warm cache starts while the registry is down. Commit it with the config.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';

export const LOCKFILE_VERSION = 1;

export interface LockEntry {
  name: string;
  version: string;
  /** The tarball URL. */
  resolved: string;
  /** SRI of the tarball (the registry's `dist.integrity`). */
  integrity: string;
  /** `verified <keyid>` or `unsigned`: what the registry's signatures said at resolution. */
  signatures: string;
  /** `none`, or `present (not verified)` when the registry has a provenance attestation. */
  provenance: string;
  /** sha256 (hex) of the filter component in the package. */
  wasmSha256: string;
}

export interface FilterLock {
  lockfileVersion: number;
  /** By ref, as the mesh config writes it (`@acme/filter-x@^1`). */
  filters: Record<string, LockEntry>;
}

export class LockFileError extends Error {
  override readonly name = 'LockFileError';
}

export async function readLock(file: string): Promise<FilterLock | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new LockFileError(`cannot read the filter lock ${file}: ${(e as Error).message}`);
  }
  let lock: unknown;
  try {
    lock = JSON.parse(text);
  } catch (e) {
    throw new LockFileError(`the filter lock ${file} is not JSON (${(e as Error).message}); fix it, or delete it to resolve every ref again`);
  }
  const l = lock as Partial<FilterLock>;
  if (l.lockfileVersion !== LOCKFILE_VERSION || typeof l.filters !== 'object' || l.filters === null) {
    throw new LockFileError(`the filter lock ${file} is not a lockfileVersion ${LOCKFILE_VERSION} lock; delete it to resolve every ref again`);
  }
  for (const [ref, e] of Object.entries(l.filters)) {
    for (const k of ['name', 'version', 'resolved', 'integrity', 'wasmSha256'] as const) {
      if (typeof e?.[k] !== 'string') throw new LockFileError(`the filter lock ${file}: ${ref} has no ${k}; delete the entry to resolve it again`);
    }
  }
  return l as FilterLock;
}

/** Writes the lock (sorted by ref, atomically) when it differs from what is on disk. */
export async function writeLock(file: string, lock: FilterLock): Promise<boolean> {
  const sorted: FilterLock = {
    lockfileVersion: LOCKFILE_VERSION,
    filters: Object.fromEntries(Object.entries(lock.filters).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
  const text = `${JSON.stringify(sorted, null, 2)}\n`;
  if ((await readFile(file, 'utf8').catch(() => undefined)) === text) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
  return true;
}
