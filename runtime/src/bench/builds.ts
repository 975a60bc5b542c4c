/**
 * Builds the measured filter into a copy of its package (the package's own dist/ is
 * never touched). Builds are cached under the work folder, keyed by a hash of
 * everything that goes into them: the filter's sources, the SDK's guest code and build
 * step, the engine module, the WIT world and the lockfile.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BenchOptions } from './options.js';

const run = promisify(execFile);
const SKIP = new Set(['dist', 'node_modules']);

async function filesUnder(dir: string, keep: (rel: string) => boolean): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((rel) => !rel.split(path.sep).some((part) => SKIP.has(part)) && keep(rel))
    .sort();
}

/** Hash of the inputs of a build of the package in `filterDir`. */
async function buildKey(opts: BenchOptions, filterDir: string): Promise<string> {
  const sdk = path.join(opts.repoRoot, 'sdk');
  const hash = createHash('sha256');
  const add = async (base: string, rels: string[]): Promise<void> => {
    for (const rel of rels) hash.update(`${rel}\0`).update(await readFile(path.join(base, rel))).update('\0');
  };
  await add(filterDir, await filesUnder(filterDir, () => true));
  const sdkDist = path.join(sdk, 'dist');
  const sdkEntries = await readdir(sdkDist, { recursive: true });
  const sdkJs = sdkEntries
    .map((f) => String(f))
    .filter((f) => f.endsWith('.js') && (f === 'index.js' || /^(guest|abi)[\\/]/.test(f) || f === path.join('build', 'build.js')))
    .sort();
  await add(sdkDist, sdkJs);
  await add(path.join(sdk, 'wit'), await filesUnder(path.join(sdk, 'wit'), () => true));
  await add(sdk, ['engine/quickjs.wasm']);
  await add(opts.repoRoot, ['package-lock.json'].filter((f) => existsSync(path.join(opts.repoRoot, f))));
  return hash.digest('hex').slice(0, 16);
}

/**
 * Returns the folder of a built copy of the filter package, building it (with the
 * SDK's own command line, in a child process) when no cached build matches.
 */
export async function buildCopy(opts: BenchOptions, filterDir: string, log: (line: string) => void): Promise<string> {
  const key = await buildKey(opts, filterDir);
  const dir = path.join(opts.workDir, 'builds', `${path.basename(filterDir)}-${key}`);
  if (!opts.rebuild && existsSync(path.join(dir, 'dist', 'manifest.json'))) {
    log(`using cached build ${path.relative(opts.workDir, dir)}`);
    await pruneSiblings(dir);
    return dir;
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await cp(filterDir, dir, {
    recursive: true,
    filter: (src) => !path.relative(filterDir, src).split(path.sep).some((part) => SKIP.has(part)),
  });
  const cli = path.join(opts.repoRoot, 'sdk/dist/build/cli.js');
  log(`building ${path.relative(opts.repoRoot, filterDir)} into ${dir}`);
  const started = performance.now();
  try {
    await run(process.execPath, [cli, 'build', dir, '--no-typecheck'], { maxBuffer: 16 * 2 ** 20 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    await rm(dir, { recursive: true, force: true });
    throw new Error(`building ${path.relative(opts.repoRoot, filterDir)} failed:\n${err.stderr?.trim() || err.message}`);
  }
  log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await pruneSiblings(dir);
  return dir;
}

/** Removes older builds of the same filter. */
async function pruneSiblings(dir: string): Promise<void> {
  const parent = path.dirname(dir);
  const prefix = path.basename(dir).replace(/[0-9a-f]{16}$/, '');
  for (const name of await readdir(parent)) {
    if (name !== path.basename(dir) && name.startsWith(prefix) && /^[0-9a-f]{16}$/.test(name.slice(prefix.length))) {
      await rm(path.join(parent, name), { recursive: true, force: true });
    }
  }
}
