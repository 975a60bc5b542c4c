/**
 * A node proxy in its own process (`ambit run --workers 1`), so that its memory can be measured
 * apart from the test's clients and upstreams: resident set size from /proc/<pid>/status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './upstreams.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js');

export interface ProxyProcess {
  /** The outbound listener's loopback port. */
  port: number;
  pid: number;
  /** Resident set size now, in bytes. */
  rss(): number;
  /** Whether the process is still running. */
  alive(): boolean;
  /** What the process wrote to stderr. */
  stderr(): string;
  close(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/**
 * Runs `ambit run` with `yaml` (a mesh config without `proxy.outbound`/`inbound`/`admin`:
 * free loopback ports are filled in), its outbound listener targeting `target`.
 */
export async function startProxyProcess(yaml: string, target: string): Promise<ProxyProcess> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-proxy-process-'));
  const [port, inbound, admin] = [await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, 'mesh.yaml');
  await writeFile(config, yaml.replace(/^proxy:\n/m, `proxy:
  outbound: { address: 127.0.0.1, port: ${port}, target: "${target}" }
  inbound: { address: 127.0.0.1, port: ${inbound} }
  admin: { address: 127.0.0.1, port: ${admin} }
`));
  const child: ChildProcess = spawn(process.execPath, [CLI, 'run', '--config', config, '--workers', '1', '--access-log', 'off', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  let exited = false;
  child.on('exit', () => { exited = true; });
  const end = Date.now() + 120_000;
  while (!(await canConnect(port))) {
    if (exited) throw new Error(`ambit run exited before listening: ${stderr}`);
    if (Date.now() > end) { child.kill('SIGKILL'); throw new Error(`ambit run did not listen on ${port} within 120 s: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    pid: child.pid!,
    rss: () => {
      const m = readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
      if (!m) throw new Error(`no VmRSS for process ${child.pid}`);
      return Number(m[1]) * 1024;
    },
    alive: () => !exited,
    stderr: () => stderr,
    close: async () => {
      if (!exited) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Samples the proxy's RSS every 25 ms while `work` runs; answers its result, the RSS before and the peak. */
export async function watchRss<T>(proxy: ProxyProcess, work: () => Promise<T>): Promise<{ result: T; base: number; peak: number }> {
  const base = proxy.rss();
  let peak = base;
  const timer = setInterval(() => { if (proxy.alive()) peak = Math.max(peak, proxy.rss()); }, 25);
  try {
    const result = await work();
    return { result, base, peak: Math.max(peak, proxy.rss()) };
  } finally {
    clearInterval(timer);
  }
}
