/**
 * A node with two pods, built from network namespaces, veth pairs and cgroups, for the capture
 * tests and benchmark (root only). Every name starts with the caller's prefix; `destroy()` removes
 * all of it (processes first, then namespaces — which take their veths and nft tables — then cgroups).
 *
 *   pod a  netns <p>-a, cgroup <p>-a   eth0 10.206.1.2/24 ── <p>a 10.206.1.1/24 ┐
 *   pod b  netns <p>-b, cgroup <p>-b   eth0 10.206.2.2/24 ── <p>b 10.206.2.1/24 ┤ node: netns <p>-node, cgroup <p>-node
 *          (and 10.206.2.3/32, an address outside the mesh)
 *                                                                                 lo: 10.206.0.1 (proxy), 10.206.0.9 (not meshed)
 * IPv6 (host routes, no DAD): pod a fd06::a2 ── fd06::a1, pod b fd06::b2 ── fd06::b1, proxy fd06::1 on the node's lo.
 * Pods route everything through the node; nothing is forwarded beyond it.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';

export const ADDR = {
  proxy: '10.206.0.1',
  external: '10.206.0.9',
  nodeA: '10.206.1.1',
  podA: '10.206.1.2',
  nodeB: '10.206.2.1',
  podB: '10.206.2.2',
  /** A second address of pod b that no config names: a destination outside the mesh. */
  podB2: '10.206.2.3',
  proxy6: 'fd06::1',
  nodeA6: 'fd06::a1',
  podA6: 'fd06::a2',
  nodeB6: 'fd06::b1',
  podB6: 'fd06::b2',
} as const;

export type Place = 'node' | 'a' | 'b';

function findTool(name: string): string {
  for (const c of [`/usr/sbin/${name}`, `/sbin/${name}`, `/usr/bin/${name}`, `/bin/${name}`]) if (existsSync(c)) return c;
  return name;
}
export const IP_BIN = findTool('ip');
const NSENTER_BIN = findTool('nsenter');

function cgroup2(): string | undefined {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  return line?.split(' ')[1];
}

/** Why the topology cannot be built here, or undefined. */
export function topologySkipReason(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, cgroups, eBPF)';
  if (!cgroup2()) return 'cgroup2 is not mounted';
  if (spawnSync(IP_BIN, ['-V']).error) return '`ip` is not installed: apt-get install -y iproute2';
  if (spawnSync(NSENTER_BIN, ['--version']).error) return '`nsenter` is not installed: apt-get install -y util-linux';
  return undefined;
}

interface Running { name: string; child: ChildProcess; output: () => string }

export class CaptureTopology {
  readonly ns: Record<Place, string>;
  readonly cgroupRel: Record<Place, string>;
  readonly cgroup: Record<Place, string>;
  readonly veth: { a: string; b: string };
  private readonly children: Running[] = [];
  private built = false;

  private constructor(readonly prefix: string, readonly cgroupRoot: string) {
    this.ns = { node: `${prefix}-node`, a: `${prefix}-a`, b: `${prefix}-b` };
    this.cgroupRel = { node: `${prefix}-node`, a: `${prefix}-a`, b: `${prefix}-b` };
    this.cgroup = {
      node: path.join(cgroupRoot, this.cgroupRel.node),
      a: path.join(cgroupRoot, this.cgroupRel.a),
      b: path.join(cgroupRoot, this.cgroupRel.b),
    };
    const short = prefix.replace(/[^a-z0-9]/gi, '').slice(0, 12);
    this.veth = { a: `${short}a`, b: `${short}b` };
  }

  /** `prefix` must be unique to the run and short (≤ 12 characters: it names veths). */
  static async create(prefix: string): Promise<CaptureTopology> {
    const root = cgroup2();
    if (!root) throw new Error('cgroup2 is not mounted');
    const t = new CaptureTopology(prefix, root);
    try {
      await t.build();
    } catch (e) {
      await t.destroy();
      throw e;
    }
    return t;
  }

  private ip(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(IP_BIN, args, { timeout: 10_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout));
    });
  }

  private async build(): Promise<void> {
    this.built = true;
    for (const place of ['node', 'a', 'b'] as const) {
      mkdirSync(this.cgroup[place], { recursive: true });
      await this.ip('netns', 'add', this.ns[place]);
      await this.ip('-n', this.ns[place], 'link', 'set', 'lo', 'up');
    }
    const n = this.ns.node;
    await this.ip('-n', n, 'addr', 'add', `${ADDR.proxy}/32`, 'dev', 'lo');
    await this.ip('-n', n, 'addr', 'add', `${ADDR.external}/32`, 'dev', 'lo');
    await this.ip('-n', n, '-6', 'addr', 'add', `${ADDR.proxy6}/128`, 'dev', 'lo', 'nodad');
    const v6 = { a: [ADDR.nodeA6, ADDR.podA6], b: [ADDR.nodeB6, ADDR.podB6] } as const;
    for (const [pod, nodeIp, podIp] of [['a', ADDR.nodeA, ADDR.podA], ['b', ADDR.nodeB, ADDR.podB]] as const) {
      const veth = this.veth[pod];
      await this.ip('-n', n, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns[pod]);
      await this.ip('-n', n, 'addr', 'add', `${nodeIp}/24`, 'dev', veth);
      await this.ip('-n', n, 'link', 'set', veth, 'up');
      await this.ip('-n', this.ns[pod], 'addr', 'add', `${podIp}/24`, 'dev', 'eth0');
      await this.ip('-n', this.ns[pod], 'link', 'set', 'eth0', 'up');
      await this.ip('-n', this.ns[pod], 'route', 'add', 'default', 'via', nodeIp);
      if (pod === 'b') await this.ip('-n', this.ns.b, 'addr', 'add', `${ADDR.podB2}/32`, 'dev', 'eth0');
      const [node6, pod6] = v6[pod];
      await this.ip('-n', n, '-6', 'addr', 'add', `${node6}/128`, 'dev', veth, 'nodad');
      await this.ip('-n', n, '-6', 'route', 'add', `${pod6}/128`, 'dev', veth);
      await this.ip('-n', this.ns[pod], '-6', 'addr', 'add', `${pod6}/128`, 'dev', 'eth0', 'nodad');
      await this.ip('-n', this.ns[pod], '-6', 'route', 'add', `${node6}/128`, 'dev', 'eth0');
      await this.ip('-n', this.ns[pod], '-6', 'route', 'add', 'default', 'via', node6, 'dev', 'eth0');
    }
  }

  /**
   * argv that runs `cmd` in `place`'s cgroup and netns. nsenter, not `ip netns exec`: that one
   * remounts /sys, hiding the cgroup2 and bpffs mounts the proxy's capture loader needs.
   */
  argv(place: Place, cmd: string[]): string[] {
    return ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', this.cgroup[place], NSENTER_BIN, `--net=/var/run/netns/${this.ns[place]}`, ...cmd];
  }

  /** Starts a long-running process in `place`; kept for destroy(), its output kept for errors. */
  start(name: string, place: Place, cmd: string[], env: Record<string, string> = {}): Running {
    const [bin, ...args] = this.argv(place, cmd);
    const child = spawn(bin!, args, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: string) => { out = (out + d).slice(-30_000); };
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    const entry = { name, child, output: () => out };
    this.children.push(entry);
    return entry;
  }

  /** Waits (bounded) for `text` in a started process's output. */
  async waitFor(entry: Running, text: string, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!entry.output().includes(text)) {
      if (entry.child.exitCode !== null || entry.child.signalCode !== null) throw new Error(`${entry.name} exited before "${text}": ${entry.output()}`);
      if (Date.now() > deadline) throw new Error(`${entry.name}: no "${text}" within ${ms} ms: ${entry.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Runs a command to completion in `place`. */
  run(place: Place, cmd: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<{ stdout: string; stderr: string; code: number }> {
    const [bin, ...args] = this.argv(place, cmd);
    return new Promise((resolve) => {
      execFile(bin!, args, { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ stdout, stderr, code });
      });
    });
  }

  /** Packets through the node side of each pod's veth (rx + tx). */
  async vethPackets(): Promise<{ a: number; b: number }> {
    const json = JSON.parse(await this.ip('-n', this.ns.node, '-s', '-j', 'link', 'show')) as Array<{ ifname: string; stats64?: { rx: { packets: number }; tx: { packets: number } } }>;
    const count = (name: string) => {
      const l = json.find((x) => x.ifname === name);
      return l?.stats64 ? l.stats64.rx.packets + l.stats64.tx.packets : 0;
    };
    return { a: count(this.veth.a), b: count(this.veth.b) };
  }

  /** Stops a started process: SIGKILL when `kill`, else stdin closed + SIGTERM (SIGKILL after 5 s). */
  async stop(entry: Running, kill = false): Promise<void> {
    const { child } = entry;
    const i = this.children.indexOf(entry);
    if (i >= 0) this.children.splice(i, 1);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    if (kill) child.kill('SIGKILL');
    else {
      child.stdin?.end();
      child.kill('SIGTERM');
    }
    const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
    let gaveUp: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise<void>((r) => { gaveUp = setTimeout(r, 10_000); })]);
    clearTimeout(t);
    clearTimeout(gaveUp);
  }

  async destroy(): Promise<void> {
    for (const entry of [...this.children].reverse()) await this.stop(entry);
    if (!this.built) return;
    for (const place of ['a', 'b', 'node'] as const) {
      // Anything left in our namespaces was started by us: end it by pid.
      const pids = await this.ip('netns', 'pids', this.ns[place]).catch(() => '');
      for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      await this.ip('netns', 'del', this.ns[place]).catch(() => undefined);
    }
    for (const place of ['a', 'b', 'node'] as const) {
      for (let i = 0; i < 50 && existsSync(this.cgroup[place]); i++) {
        try { rmdirSync(this.cgroup[place]); } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
    }
    this.built = false;
  }
}
