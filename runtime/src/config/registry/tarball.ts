/**
 * An npm package tarball (`.tgz`, every path under `package/`) read in memory and laid
 * out in a folder. Only regular files are taken; a path leaving the package (`..`,
 * absolute) or a link refuses the whole tarball. Files already on disk with the same
 * bytes are left untouched, so laying out the same tarball again changes nothing (and
 * wakes no file watcher).
 */
import { readFile, mkdir, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { Parser, type ReadEntry } from 'tar';

/** Largest unpacked package taken (a filter is a component of a few MiB, a schema and a manifest). */
export const MAX_UNPACKED_BYTES = 64 * 2 ** 20;

export async function readTarball(tgz: Uint8Array): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  let total = 0;
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({ strict: true });
    parser.on('entry', (entry: ReadEntry) => {
      const rel = entry.path.replace(/^[^/]+\//, '');
      if (entry.type === 'Directory') return void entry.resume();
      if (entry.type !== 'File' && entry.type !== 'OldFile') {
        reject(new Error(`the tarball holds a ${entry.type} (${entry.path}); filter packages hold regular files only`));
        return void entry.resume();
      }
      const norm = path.posix.normalize(rel);
      if (rel === '' || norm.startsWith('..') || path.posix.isAbsolute(norm)) {
        reject(new Error(`the tarball holds a path outside the package: ${JSON.stringify(entry.path)}`));
        return void entry.resume();
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => {
        total += c.length;
        if (total > MAX_UNPACKED_BYTES) reject(new Error(`the package unpacks to more than ${MAX_UNPACKED_BYTES / 2 ** 20} MiB`));
        else chunks.push(c);
      });
      entry.on('end', () => files.set(norm, Buffer.concat(chunks)));
    });
    parser.on('error', reject);
    parser.on('abort', (e: Error) => reject(e));
    parser.on('end', () => resolve());
    parser.end(Buffer.from(tgz));
  });
  if (!files.has('package.json')) throw new Error('the tarball has no package/package.json');
  return files;
}

/** Writes `files` under `dir`, leaving files that already hold the same bytes alone. */
export async function layOut(files: Map<string, Buffer>, dir: string): Promise<void> {
  for (const [rel, data] of files) {
    const target = path.join(dir, rel);
    const current = await readFile(target).catch(() => undefined);
    if (current?.equals(data)) continue;
    await mkdir(path.dirname(target), { recursive: true });
    const tmp = `${target}.${process.pid}.tmp`;
    await writeFile(tmp, data);
    await rename(tmp, target);
  }
}
