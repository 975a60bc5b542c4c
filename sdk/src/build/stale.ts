/**
 * Whether a filter package's build output is older than what it is built from: its
 * package.json, every file under its source folder, and the SDK itself (its compiled
 * guest runtime, build pipeline and WIT). `ambit-filter build --if-stale` and the test
 * setup use it to rebuild only what changed.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** What every build embeds (the guest runtime, the WIT) or what makes it (the pipeline): a change here rebuilds every filter. */
const SDK_INPUTS = ['dist/guest-index.js', 'dist/guest', 'dist/abi', 'dist/build/build.js', 'wit', 'engine/quickjs.wasm'];

async function newestMtime(file: string): Promise<number> {
  let info;
  try {
    info = await stat(file);
  } catch {
    return 0;
  }
  if (!info.isDirectory()) return info.mtimeMs;
  let newest = info.mtimeMs;
  for (const entry of await readdir(file)) {
    if (entry === 'node_modules' || entry === 'dist' || entry.startsWith('.')) continue;
    newest = Math.max(newest, await newestMtime(path.join(file, entry)));
  }
  return newest;
}

/**
 * Why `dir` needs a build (`dist/filter.wasm missing`, `src/filter.ts changed`, …), or
 * undefined when its output is newer than every input.
 */
export async function buildStaleness(dir: string): Promise<string | undefined> {
  const root = path.resolve(dir);
  let field: { filter?: string; source?: string } = {};
  try {
    field = (JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { ambit?: typeof field }).ambit ?? {};
  } catch {
    return 'package.json unreadable';
  }
  const wasm = path.join(root, field.filter ?? 'dist/filter.wasm');
  const manifest = path.join(path.dirname(wasm), 'manifest.json');
  for (const out of [wasm, manifest]) if (!existsSync(out)) return `${path.relative(root, out)} missing`;
  const built = Math.min((await stat(wasm)).mtimeMs, (await stat(manifest)).mtimeMs);
  const source = path.dirname(path.join(root, field.source ?? 'src/filter.ts'));
  const own: Array<[string, string]> = [[path.join(root, 'package.json'), 'package.json'], [source, `${path.relative(root, source)}/`]];
  for (const [file, label] of own) if ((await newestMtime(file)) > built) return `${label} changed`;
  for (const input of SDK_INPUTS) {
    if ((await newestMtime(path.join(SDK_ROOT, input))) > built) return `the SDK changed (${input})`;
  }
  return undefined;
}
