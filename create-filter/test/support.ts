/** Shared by create-filter's tests: a scratch folder inside the repo and running commands as a user types them. */
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CREATE_BIN = path.join(REPO, 'create-filter/bin/create-filter.js');

/**
 * A folder under `<repo>/.scratch` (git-ignored): a package scaffolded there finds the
 * SDK, the runtime and vitest in the repo's node_modules, as an installed project
 * finds them in its own.
 */
export async function scratch(tag: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  await mkdir(path.join(REPO, '.scratch'), { recursive: true });
  const dir = await mkdtemp(path.join(REPO, '.scratch', `${tag}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface Ran { code: number | null; stdout: string; stderr: string }

/** Runs a command to its end (bounded by `timeoutMs`), collecting its output. */
export function sh(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    // Plain output, as in a log: no colours to match around.
    const { FORCE_COLOR: _force, ...env } = opts.env ?? process.env;
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 180_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
