/**
 * A small network lab for multi-node tests: named network namespaces, a veth pair
 * between two of them, and processes started inside them. Everything it makes is
 * named with the caller's prefix and undone by `cleanup()` (processes first, then the
 * namespaces, which take their links, routes and nft tables with them), also after a
 * failed setup.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { IP } from '../netns.js';

const execFileP = promisify(execFile);

export interface LabProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** The last 20 kB of its stdout and stderr. */
  output(): string;
  /** Resolves when its output contains `text`; rejects after `timeoutMs` or when it exits first. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

export class NetnsLab {
  private readonly namespaces: string[] = [];
  private readonly processes: LabProcess[] = [];

  /** Runs a command in the root namespace (`ip …`). */
  async ip(...args: string[]): Promise<string> {
    const { stdout } = await execFileP(IP, args, { timeout: 10_000 });
    return stdout;
  }

  /** Creates a namespace with `lo` up. */
  async namespace(name: string): Promise<string> {
    await this.ip('netns', 'add', name);
    this.namespaces.push(name);
    await this.ip('-n', name, 'link', 'set', 'lo', 'up');
    return name;
  }

  /** Joins two namespaces with a veth pair, each end addressed (`10.0.0.1/24`) and up. */
  async veth(a: { ns: string; ifname: string; cidr: string }, b: { ns: string; ifname: string; cidr: string }): Promise<void> {
    await this.ip('link', 'add', a.ifname, 'netns', a.ns, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns);
    for (const end of [a, b]) {
      await this.ip('-n', end.ns, 'addr', 'add', end.cidr, 'dev', end.ifname);
      await this.ip('-n', end.ns, 'link', 'set', end.ifname, 'up');
    }
  }

  /** Runs a command to completion inside `ns`, with `input` on its stdin. */
  exec(ns: string, cmd: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = execFile(IP, ['netns', 'exec', ns, cmd, ...args], { timeout: options.timeoutMs ?? 15_000, env: options.env ?? process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${cmd} ${args.join(' ')} in ${ns}: ${err.message}\n${stderr}`)) : resolve(stdout));
      child.stdin?.end(options.input ?? '');
    });
  }

  /** Starts a long-running process inside `ns`. */
  start(ns: string, name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): LabProcess {
    const child = spawn(IP, ['netns', 'exec', ns, cmd, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const waiters = new Set<() => void>();
    const onData = (d: string) => {
      out = (out + d).slice(-20_000);
      for (const w of waiters) w();
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onData);
    const proc: LabProcess = {
      name, child,
      output: () => out,
      waitFor: (text, timeoutMs = 20_000) => new Promise<void>((resolve, reject) => {
        const check = () => {
          if (out.includes(text)) { finish(); resolve(); }
        };
        const onExit = () => { finish(); reject(new Error(`${name} exited before printing ${JSON.stringify(text)}:\n${out}`)); };
        const timer = setTimeout(() => { finish(); reject(new Error(`${name} did not print ${JSON.stringify(text)} within ${timeoutMs} ms:\n${out}`)); }, timeoutMs);
        const finish = () => { clearTimeout(timer); waiters.delete(check); child.off('exit', onExit); };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      }),
    };
    this.processes.push(proc);
    return proc;
  }

  /** Stops a process: SIGTERM (or `signal`), SIGKILL after 5 s. */
  async stop(proc: LabProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const { child } = proc;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdin?.end();
    // `ip netns exec` passes signals on to the command it runs (it execs it).
    child.kill(signal);
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    let gaveUp: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((r) => { gaveUp = setTimeout(r, 10_000); })]);
    clearTimeout(kill);
    clearTimeout(gaveUp);
  }

  /** Stops every process (last started first), then deletes the namespaces. Never throws. */
  async cleanup(): Promise<void> {
    for (const p of [...this.processes].reverse()) await this.stop(p).catch(() => undefined);
    this.processes.length = 0;
    for (const ns of this.namespaces.splice(0).reverse()) {
      // Whatever still runs in our namespace was started by this lab: end it by its pid.
      const left = await this.ip('netns', 'pids', ns).catch(() => '');
      for (const pid of left.split(/\s+/).filter(Boolean).map(Number)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
      }
      await this.ip('netns', 'del', ns).catch(() => undefined);
    }
  }
}
