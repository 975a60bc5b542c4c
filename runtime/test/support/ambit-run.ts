/**
 * `ambit run` in a child process, until it serves `/config_dump` (read once) or exits; then it is
 * stopped (SIGTERM flushes its log) and what it wrote is returned.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO } from '../fixtures.js';

const CLI = path.join(REPO, 'runtime/dist/cli.js');

export interface AmbitRun<Dump> {
  /** The exit code when it stopped on its own (before serving /config_dump); null when it was stopped. */
  code: number | null;
  /** stdout and stderr, interleaved. */
  output: string;
  dump?: Dump;
}

export async function runUntilConfigDump<Dump>(config: string, adminPort: number, o: { args?: string[]; nodeArgs?: string[]; timeoutMs?: number } = {}): Promise<AmbitRun<Dump>> {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), CLI, 'run', '--config', config, '--access-log', 'off', ...(o.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  let dump: Dump | undefined;
  try {
    while (Date.now() < deadline) {
      const done = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
      if (done !== undefined) return { code: done, output };
      const res = await fetch(`http://127.0.0.1:${adminPort}/config_dump`).catch(() => undefined);
      if (res?.ok) {
        dump = (await res.json()) as Dump;
        break;
      }
    }
    if (!dump) throw new Error(`ambit run neither served /config_dump nor exited within ${timeoutMs / 1000} s:\n${output}`);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  }
  return { code: null, output, dump };
}
