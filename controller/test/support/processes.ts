/** The controller and node proxies as child processes, with their logs kept for assertions and failures. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO } from './cluster.js';

export interface Proc {
  readonly child: ChildProcess;
  logs(): string;
  /** Resolves with the first log line matching `re` (its match), or rejects after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function start(name: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let logs = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const onData = (d: Buffer) => {
    logs += d.toString();
    if (logs.length > 2_000_000) logs = logs.slice(-1_000_000);
    for (const w of [...waiters]) {
      const m = w.re.exec(logs);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  return {
    child,
    logs: () => logs,
    waitFor(re, timeoutMs = 60_000) {
      const m = re.exec(logs);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const w = { re, resolve: (x: RegExpMatchArray) => { clearTimeout(t); resolve(x); } };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`${name}: no log line matching ${re} within ${timeoutMs} ms; logs:\n${logs.slice(-4000)}`));
        }, timeoutMs);
        waiters.push(w);
        child.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`${name} exited (${code}) before logging ${re}; logs:\n${logs.slice(-4000)}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await new Promise((r) => { child.once('exit', r); setTimeout(r, 30_000); });
    },
  };
}

export const CONTROLLER_CLI = path.join(REPO, 'controller/dist/cli.js');
export const AMBIT_CLI = path.join(REPO, 'runtime/dist/cli.js');
