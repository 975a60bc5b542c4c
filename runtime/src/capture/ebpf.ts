/**
 * eBPF capture: loads the programs of `bpf/` (shipped compiled), keeps their maps in step with the
 * mesh config, and attaches them as pinned `bpf_link`s, so a restarted proxy takes over its
 * predecessor's attachments (switching each pinned link to the newly loaded program) without a gap.
 *
 *   <pinDir>/                  0700; the maps, pinned by name (ambit_config, ambit_meshed, …)
 *   <pinDir>/links/proxy/      getsockopt + sockops on the proxy's cgroup
 *   <pinDir>/links/sockhash/   sk_msg on ambit_socks
 *   <pinDir>/links/pod-<namespace>_<name>/ connect4/6, getpeername4/6, sockops on the pod's cgroup
 *   (bpffs refuses dots in names: `_` cannot occur in a namespace or a name)
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as bpf from '@ambit/addon/bpf';
import { AmbitError, errorMessage } from '../deps.js';
import { cgroupId, ownCgroup, POD_UID_ENV, podCgroupDir, podCgroupWanted, resolveCgroup } from './cgroups.js';
import {
  CFG_ENABLED, CFG_SOCKHASH, encodeConfig, encodeDestKey, SIZES, sockKeyLocal, STAT_NAMES, tupleClient, u32, type StatName,
} from './layout.js';
import { bpffsMount, cgroup2Mount, ensureBpffs } from './mounts.js';
import type { CapturePlan, EnrolledPod } from './plan.js';

/** Where the compiled objects are: `$AMBIT_BPF_DIR`, else `bpf/` at the repository root. */
export const BPF_DIR = process.env['AMBIT_BPF_DIR'] ?? fileURLToPath(new URL('../../../bpf/', import.meta.url));
const BPF_FS_MAGIC = 0xcafe4a11;
const OBJECTS = ['connect', 'peername', 'sockopt', 'sockops', 'redirect'] as const;

const POD_PROGRAMS = ['ambit_connect4', 'ambit_connect6', 'ambit_getpeername4', 'ambit_getpeername6', 'ambit_sockops'] as const;
const PROXY_PROGRAMS = ['ambit_getsockopt', 'ambit_sockops'] as const;

export type CaptureStats = Record<StatName, number>;

export interface EbpfStatus {
  pinDir: string;
  proxyCgroup: string;
  pods: Array<{ key: string; cgroup: string | undefined }>;
  /** Entries in the connection maps now: redirected connections not yet closed, short-circuited sockets. */
  entries: { origByTuple: number; socks: number };
}

type Log = (level: 'info' | 'warn', message: string) => void;

/** The link folder of a pod `name.namespace`, and back. */
export function podLinkDir(key: string): string {
  const dot = key.indexOf('.');
  return `pod-${key.slice(dot + 1)}_${key.slice(0, dot)}`;
}
function podKeyOfDir(dir: string): string {
  const [ns = '', name = ''] = dir.slice('pod-'.length).split('_');
  return `${name}.${ns}`;
}

/** The pin directory: `pinDir` absolute, or under the bpffs mount; default `<bpffs>/ambit`. */
export function pinDirOf(setting: string | undefined, bpffs: string): string {
  if (!setting) return path.join(bpffs, 'ambit');
  return path.isAbsolute(setting) ? setting : path.join(bpffs, setting);
}

function fail(step: string, e: unknown, hint: string): never {
  throw new AmbitError('AMBIT_ERR_CAPTURE', `eBPF ${step}: ${errorMessage(e)}${hint ? `: ${hint}` : ''}`, { cause: e });
}

function privilegeHint(e: unknown): string {
  const code = (e as { code?: string }).code;
  if (code === 'EPERM' || code === 'EACCES') return 'needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON';
  return '';
}

export class EbpfCapture {
  private readonly objects: bpf.BpfObject[] = [];
  private readonly maps = new Map<string, bpf.BpfMapInfo>();
  private readonly programs = new Map<string, bpf.BpfProgramInfo>();
  private readonly cgroupRoot: string;
  readonly pinDir: string;
  private proxyCgroup = '';
  private enrolled = new Map<string, EnrolledPod>();

  private constructor(pinDir: string, cgroupRoot: string, private readonly log: Log) {
    this.pinDir = pinDir;
    this.cgroupRoot = cgroupRoot;
  }

  /** Loads, configures and attaches everything `plan` asks for. Throws AMBIT_ERR_CAPTURE saying which step failed. */
  static install(plan: CapturePlan, log: Log): EbpfCapture {
    if (!bpf.available) throw new AmbitError('AMBIT_ERR_CAPTURE', `eBPF unavailable: ${bpf.unavailableReason ?? 'loader addon missing'}`);
    const root = cgroup2Mount();
    if (!root) throw new AmbitError('AMBIT_ERR_CAPTURE', 'eBPF unavailable: cgroup2 is not mounted (no cgroup2 line in /proc/mounts): mount it, e.g. `mount -t cgroup2 none /sys/fs/cgroup/unified`');
    let bpffs: string;
    try { bpffs = ensureBpffs(); } catch (e) { fail('unavailable', e, ''); }
    const capture = new EbpfCapture(pinDirOf(plan.settings.pinDir, bpffs), root, log);
    try {
      capture.load();
      capture.apply(plan);
    } catch (e) {
      capture.close();
      // Step down cleanly: no half-attached eBPF beside whatever comes next.
      try { uninstallEbpf(plan.settings.pinDir); } catch { /* nothing more to remove */ }
      throw e;
    }
    return capture;
  }

  private load(): void {
    for (const sub of ['', 'links']) {
      const dir = path.join(this.pinDir, sub);
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        chmodSync(dir, 0o700);
      } catch (e) { fail(`pin directory ${dir}`, e, privilegeHint(e) || 'pinDir must be inside a bpffs mount'); }
    }
    if (statfsSync(this.pinDir).type !== BPF_FS_MAGIC) {
      fail(`unavailable: pin directory ${this.pinDir} is not on bpffs`, new Error('pins need a bpffs'), `set capture.pinDir to a folder name (placed under ${bpffsMount() ?? 'the bpffs mount'}) or a path inside a bpffs mount`);
    }
    for (const name of OBJECTS) {
      const file = path.join(BPF_DIR, `${name}.bpf.o`);
      if (!existsSync(file)) fail(`unavailable: ${file} is missing`, new Error('not built'), 'run `make -C bpf` (needs clang, llvm, libbpf-dev)');
      let obj: bpf.BpfObject;
      try {
        obj = bpf.loadObject(file, this.pinDir);
      } catch (e) {
        const hint = privilegeHint(e) ||
          ((e as { code?: string }).code === 'EINVAL' ? `maps pinned in ${this.pinDir} by another version? run \`ambit capture uninstall\`` : '');
        fail(`unavailable: loading ${name}.bpf.o failed`, e, hint);
      }
      this.objects.push(obj);
      for (const [k, v] of Object.entries(obj.programs)) this.programs.set(k, v);
      for (const [k, v] of Object.entries(obj.maps)) if (!this.maps.has(k)) this.maps.set(k, v);
    }
  }

  private map(name: string): bpf.BpfMapInfo {
    const m = this.maps.get(name);
    if (!m) throw new AmbitError('AMBIT_ERR_CAPTURE', `eBPF: map ${name} is missing from the loaded objects (stale bpf/ build? run \`make -C bpf\`)`);
    return m;
  }

  private program(name: string): bpf.BpfProgramInfo {
    const p = this.programs.get(name);
    if (!p) throw new AmbitError('AMBIT_ERR_CAPTURE', `eBPF: program ${name} is missing from the loaded objects (stale bpf/ build? run \`make -C bpf\`)`);
    return p;
  }

  private linkDir(sub: string): string {
    const dir = path.join(this.pinDir, 'links', sub);
    try { mkdirSync(dir, { recursive: true, mode: 0o700 }); } catch (e) { fail(`pin directory ${dir}`, e, privilegeHint(e)); }
    return dir;
  }

  /** Brings maps and attachments in line with `plan`: new pods attached, departed pods detached and their entries removed. */
  apply(plan: CapturePlan): void {
    let proxyRel: string;
    try { proxyRel = plan.settings.proxyCgroup ?? ownCgroup(this.cgroupRoot); } catch (e) { fail('proxy cgroup', e, `set capture.proxyCgroup, or ${POD_UID_ENV} to the proxy's pod UID`); }
    this.proxyCgroup = resolveCgroup(this.cgroupRoot, proxyRel);
    let proxyCgroupId: bigint;
    try { proxyCgroupId = cgroupId(this.proxyCgroup); } catch (e) { fail(`proxy cgroup ${this.proxyCgroup}`, e, 'set capture.proxyCgroup to an existing cgroup2 directory'); }

    // Config first: pods attached below start redirecting at once.
    try {
      bpf.mapUpdate(this.map('ambit_config').fd, u32(0), encodeConfig({
        proxyIp4: plan.redirect.ip4,
        proxyIp6: plan.redirect.ip6,
        proxyPort: plan.redirect.port,
        flags: CFG_ENABLED | (plan.settings.sockhash ? CFG_SOCKHASH : 0),
        proxyCgroupId,
        proxyNetnsCookie: bpf.currentNetnsCookie(),
      }));
      this.syncMeshed(plan);
    } catch (e) {
      if (e instanceof AmbitError) throw e;
      fail('writing the capture maps', e, privilegeHint(e));
    }

    const attachTo = (sub: string, cgroup: string, names: readonly string[]) => {
      const dir = this.linkDir(sub);
      for (const name of names) {
        const p = this.program(name);
        try {
          bpf.attachCgroup(p.fd, p.attachType, cgroup, path.join(dir, name));
        } catch (e) { fail(`attaching ${name} to ${cgroup}`, e, privilegeHint(e)); }
      }
    };
    attachTo('proxy', this.proxyCgroup, PROXY_PROGRAMS);
    const msg = this.program('ambit_redirect');
    try {
      bpf.attachMap(msg.fd, msg.attachType, this.map('ambit_socks').fd, path.join(this.linkDir('sockhash'), 'ambit_redirect'));
    } catch (e) { fail('attaching sk_msg to the sockhash', e, privilegeHint(e) || 'sk_msg links need kernel 6.10 or later'); }

    const next = new Map<string, EnrolledPod>();
    for (const pod of plan.pods) {
      const dir = podCgroupDir(this.cgroupRoot, pod, (d) => { try { return statSync(d).isDirectory(); } catch { return false; } });
      if (!dir) {
        this.log('warn', `capture: workload ${pod.key} not enrolled: its cgroup ${podCgroupWanted(this.cgroupRoot, pod)} does not exist (check workloads[].cgroup or podUid; relative paths are under ${this.cgroupRoot})`);
        continue;
      }
      attachTo(podLinkDir(pod.key), dir, POD_PROGRAMS);
      next.set(pod.key, { ...pod, cgroup: dir });
    }
    // Pods that left: pinned link folders of pods not in the plan (also those of a previous run).
    for (const entry of this.podLinkDirs()) {
      const key = podKeyOfDir(entry);
      if (next.has(key)) continue;
      detachAll(path.join(this.pinDir, 'links', entry));
      const gone = this.enrolled.get(key);
      if (gone) this.forget(gone.address);
      this.log('info', `capture: workload ${key} left the mesh: detached`);
    }
    this.enrolled = next;
  }

  private podLinkDirs(): string[] {
    try {
      return readdirSync(path.join(this.pinDir, 'links')).filter((d) => d.startsWith('pod-'));
    } catch {
      return [];
    }
  }

  /** ambit_meshed := the plan's destinations (stale keys deleted, then all written). */
  private syncMeshed(plan: CapturePlan): void {
    const m = this.map('ambit_meshed');
    const want = new Map(plan.destinations.map((d) => [encodeDestKey(d).toString('hex'), d]));
    for (const key of bpf.mapKeys(m.fd, m.keySize)) {
      if (!want.has(key.toString('hex'))) bpf.mapDelete(m.fd, key);
    }
    for (const [hex, d] of want) bpf.mapUpdate(m.fd, Buffer.from(hex, 'hex'), u32(d.flags));
  }

  /** Removes a departed pod's connection entries (its sockets' own entries go when they close). */
  private forget(address: string): void {
    const tuples = this.map('ambit_orig_by_tuple');
    for (const key of bpf.mapKeys(tuples.fd, tuples.keySize)) {
      if (tupleClient(key).ip === address) bpf.mapDelete(tuples.fd, key);
    }
    const state = this.map('ambit_redirect_state');
    for (const key of bpf.mapKeys(state.fd, state.keySize)) {
      if (sockKeyLocal(key).ip === address) bpf.mapDelete(state.fd, key);
    }
  }

  /** The programs' counters, summed over CPUs. */
  stats(): CaptureStats {
    const m = this.map('ambit_stats');
    const cpus = bpf.possibleCpus();
    const out = {} as CaptureStats;
    STAT_NAMES.forEach((name, i) => {
      const v = bpf.mapLookup(m.fd, u32(i), 8 * cpus);
      let sum = 0n;
      if (v) for (let c = 0; c < cpus; c++) sum += v.readBigUInt64LE(c * 8);
      out[name] = Number(sum);
    });
    return out;
  }

  /** Entries in the connection maps now (for status and tests). */
  entries(): { origByTuple: number; socks: number } {
    const t = this.map('ambit_orig_by_tuple');
    return { origByTuple: bpf.mapKeys(t.fd, t.keySize).length, socks: this.sockCount() };
  }

  private sockCount(): number {
    const s = this.map('ambit_socks');
    return bpf.mapKeys(s.fd, SIZES.sockKey).length;
  }

  status(): EbpfStatus {
    return {
      pinDir: this.pinDir,
      proxyCgroup: this.proxyCgroup,
      pods: [...this.enrolled.values()].map((p) => ({ key: p.key, cgroup: p.cgroup })),
      entries: this.entries(),
    };
  }

  /** Closes the loaded objects; pinned links and maps stay (capture goes on across a restart). */
  close(): void {
    for (const o of this.objects.splice(0)) {
      try { bpf.closeObject(o.handle); } catch { /* already closed */ }
    }
  }
}

/** Detaches every link pinned below `dir` and removes the folder. */
function detachAll(dir: string): void {
  let names: string[] = [];
  try { names = readdirSync(dir); } catch { return; }
  for (const name of names) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) detachAll(p);
    else bpf.detachLink(p);
  }
  rmdirSync(dir);
}

/**
 * Removes everything eBPF capture pinned under `pinDir` (setting as in the config): detaches
 * every link, unpins the maps (the kernel frees programs and maps once nothing holds them), and
 * removes the folder. Returns what it removed; nothing when there was nothing.
 */
export function uninstallEbpf(pinDirSetting: string | undefined): string[] {
  if (!bpf.available) throw new AmbitError('AMBIT_ERR_CAPTURE', `cannot uninstall eBPF capture: ${bpf.unavailableReason ?? 'loader addon missing'}`);
  const bpffs = bpffsMount();
  if (!bpffs) return [];
  const dir = pinDirOf(pinDirSetting, bpffs);
  if (!existsSync(dir)) return [];
  // Only ever a bpffs folder: a pinDir pointing elsewhere by mistake must not empty that folder.
  if (statfsSync(dir).type !== BPF_FS_MAGIC) return [];
  const removed: string[] = [];
  const links = path.join(dir, 'links');
  if (existsSync(links)) {
    for (const sub of readdirSync(links)) removed.push(`links/${sub}`);
    detachAll(links);
  }
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) rmSync(p, { recursive: true, force: true });
    else unlinkSync(p);
    removed.push(name);
  }
  rmdirSync(dir);
  return removed;
}
