/**
 * The eBPF loader's kernel calls (load an object with its maps pinned by name, attach programs
 * as pinned `bpf_link`s, read and write maps, mount bpffs), through a small N-API addon on the
 * system libbpf (`src/bpf.c`, built into `build/Release/ambit_bpf.node` when libbpf's headers
 * are installed). Microseconds per map operation, where a `bpftool` subprocess costs milliseconds.
 *
 * Optional like the socket addon: `available` says whether it loaded and `unavailableReason`
 * says what to do when it did not. The functions throw when it is unavailable.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface BpfProgramInfo {
  /** Program fd, valid while its object is open. */
  fd: number;
  /** The kernel's `enum bpf_attach_type` the program was loaded for. */
  attachType: number;
  /** ELF section (`cgroup/connect4`, `sockops`, …). */
  section: string;
}

export interface BpfMapInfo {
  fd: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** Where the map is pinned (maps declared with LIBBPF_PIN_BY_NAME). */
  pinPath?: string;
}

export interface BpfObject {
  handle: number;
  programs: Record<string, BpfProgramInfo>;
  maps: Record<string, BpfMapInfo>;
}

interface NativeBpf {
  loadObject(path: string, pinRoot: string): BpfObject;
  closeObject(handle: number): void;
  attachCgroup(progFd: number, attachType: number, cgroupPath: string, pinPath: string): 'attached' | 'updated';
  attachMap(progFd: number, attachType: number, mapFd: number, pinPath: string): 'attached' | 'updated';
  detachLink(pinPath: string): boolean;
  mapUpdate(mapFd: number, key: Buffer, value: Buffer): void;
  mapDelete(mapFd: number, key: Buffer): boolean;
  mapLookup(mapFd: number, key: Buffer, valueBytes: number): Buffer | null;
  mapKeys(mapFd: number, keyBytes: number): Buffer[];
  possibleCpus(): number;
  mountBpffs(path: string): void;
  currentNetnsCookie(): bigint;
}

/** Absolute path of the compiled loader addon. */
export const bpfAddonPath: string = fileURLToPath(new URL('../build/Release/ambit_bpf.node', import.meta.url));

const HINT =
  'install libbpf\'s headers (apt-get install -y libbpf-dev) and run `npm run build` ' +
  '(or `npm run build -w @ambit/addon`)';

function load(): { native: NativeBpf; reason: undefined } | { native: undefined; reason: string } {
  if (process.env['AMBIT_DISABLE_ADDON'] === '1') return { native: undefined, reason: 'native addon disabled by AMBIT_DISABLE_ADDON=1' };
  if (process.platform !== 'linux') return { native: undefined, reason: `eBPF needs Linux (this is ${process.platform})` };
  if (!existsSync(bpfAddonPath)) return { native: undefined, reason: `the eBPF loader addon is not built (${bpfAddonPath} is missing): ${HINT}` };
  try {
    const loaded = createRequire(import.meta.url)(bpfAddonPath) as NativeBpf;
    if (typeof loaded.loadObject !== 'function' || typeof loaded.attachMap !== 'function') {
      return { native: undefined, reason: `the eBPF loader addon at ${bpfAddonPath} is stale: ${HINT}` };
    }
    return { native: loaded, reason: undefined };
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    return { native: undefined, reason: `the eBPF loader addon failed to load (${text.split('\n', 1)[0] ?? text}): ${HINT}` };
  }
}

const loaded = load();

/** True when the loader addon is loaded. */
export const available: boolean = loaded.native !== undefined;
/** When `available` is false: one line saying why and what to do. */
export const unavailableReason: string | undefined = loaded.reason;

function native(): NativeBpf {
  if (!loaded.native) throw new Error(loaded.reason);
  return loaded.native;
}

/**
 * Opens and loads a BPF object file; maps declared with LIBBPF_PIN_BY_NAME are reused from
 * `pinRoot` when pinned there already, else created and pinned there. Keep the object open while
 * its program fds are needed; links pinned from it outlive {@link closeObject}.
 */
export function loadObject(path: string, pinRoot: string): BpfObject {
  return native().loadObject(path, pinRoot);
}

export function closeObject(handle: number): void {
  native().closeObject(handle);
}

/**
 * Attaches a program to a cgroup (v2 directory) as a `bpf_link` pinned at `pinPath` (mode 0600);
 * when a link is pinned there already it is switched to this program instead ('updated').
 */
export function attachCgroup(progFd: number, attachType: number, cgroupPath: string, pinPath: string): 'attached' | 'updated' {
  return native().attachCgroup(progFd, attachType, cgroupPath, pinPath);
}

/** Attaches a program to a map (sk_msg to a sockhash) as a pinned `bpf_link`, or updates the pinned one. */
export function attachMap(progFd: number, attachType: number, mapFd: number, pinPath: string): 'attached' | 'updated' {
  return native().attachMap(progFd, attachType, mapFd, pinPath);
}

/** Detaches the link pinned at `pinPath` and removes the pin; false when there is none. */
export function detachLink(pinPath: string): boolean {
  return native().detachLink(pinPath);
}

export function mapUpdate(mapFd: number, key: Buffer, value: Buffer): void {
  native().mapUpdate(mapFd, key, value);
}

/** False when the key was not there. */
export function mapDelete(mapFd: number, key: Buffer): boolean {
  return native().mapDelete(mapFd, key);
}

/** The value under `key` (`valueBytes` long: per-CPU maps need value size rounded to 8 × possible CPUs), or null. */
export function mapLookup(mapFd: number, key: Buffer, valueBytes: number): Buffer | null {
  return native().mapLookup(mapFd, key, valueBytes);
}

export function mapKeys(mapFd: number, keyBytes: number): Buffer[] {
  return native().mapKeys(mapFd, keyBytes);
}

/** Possible CPUs, the stride of per-CPU map values. */
export function possibleCpus(): number {
  return native().possibleCpus();
}

/** Mounts a bpffs (mode 0700) at `path`. */
export function mountBpffs(path: string): void {
  native().mountBpffs(path);
}

/** The cookie of this process's network namespace, as eBPF's bpf_get_netns_cookie() sees it. */
export function currentNetnsCookie(): bigint {
  return native().currentNetnsCookie();
}
