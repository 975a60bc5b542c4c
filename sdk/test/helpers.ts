/** Shared by the SDK tests: temp filter packages and a way to run the real CLI. */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../..');
export const HELLO_DIR = path.join(REPO, 'examples/filters/hello');
/** The compiled CLI, as `npm run build` leaves it. */
export const CLI = path.join(REPO, 'sdk/dist/build/cli.js');

/**
 * A temp folder outside the repo, so that nothing resolves through the repo's
 * node_modules by accident: the build must find `@ambit/filter-sdk` on its own.
 */
export async function makeTempRoot(tag: string): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), `ambit-sdk-${tag}-`));
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/**
 * Points the transpiled-component cache (AMBIT_CACHE_DIR, used by the build in the CLI
 * children and by the harness in this process) into `root`, so test runs do not
 * fill the shared cache with one-off builds. Each test file runs in its own process.
 */
export function useCacheIn(root: string): () => void {
  const before = process.env.AMBIT_CACHE_DIR;
  process.env.AMBIT_CACHE_DIR = path.join(root, '.ambit-cache');
  return () => {
    if (before === undefined) delete process.env.AMBIT_CACHE_DIR;
    else process.env.AMBIT_CACHE_DIR = before;
  };
}

/** Copies the hello example's src/ and package.json into `dir` (never its dist/). */
export async function copyHello(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await cp(path.join(HELLO_DIR, 'src'), path.join(dir, 'src'), { recursive: true });
  await cp(path.join(HELLO_DIR, 'package.json'), path.join(dir, 'package.json'));
  return dir;
}

/** Writes a one-file filter package: package.json and src/filter.ts. */
export async function writeFilterPackage(dir: string, source: string, pkg: Record<string, unknown> = {}): Promise<string> {
  await mkdir(path.join(dir, 'src'), { recursive: true });
  const name = `@ambit-test/filter-${path.basename(dir)}`;
  await writeFile(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name, version: '0.0.1', type: 'module', ambit: { filter: 'dist/filter.wasm', source: 'src/filter.ts' }, ...pkg }, null, 2)}\n`,
  );
  await writeFile(path.join(dir, 'src/filter.ts'), source);
  return dir;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node sdk/dist/build/cli.js ...args` and collects its exit code and output. */
export function runCli(args: string[], cwd = os.tmpdir()): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { cwd, maxBuffer: 16 * 2 ** 20, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') {
        reject(error);
        return;
      }
      resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
    });
  });
}

/** Builds a filter package with the CLI and fails with its output when the build fails. */
export async function buildWithCli(dir: string, extra: string[] = []): Promise<CliRun> {
  const run = await runCli(['build', dir, ...extra]);
  if (run.code !== 0) throw new Error(`ambit-filter build ${dir} ${extra.join(' ')} exited with ${run.code}:\n${run.stderr}`);
  return run;
}

/** The error `fn` throws (an `expect(...).toThrow` that hands back the error). */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

/** The error `p` rejects with. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}
