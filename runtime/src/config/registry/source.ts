/**
 * Resolves npm filter refs through a registry (`filterSource` in the mesh config):
 *
 *   lock file has the ref? ── yes ─▶ its exact version + integrity (no registry question)
 *        │ no (and not frozenLock)
 *        ▼
 *   packument (GET <registry>/<name>) → version: `latest` if it satisfies the range, else
 *   the highest that does → signatures checked against the registry's keys when present
 *        ▼
 *   tarball: from the cache (by integrity) or downloaded → its SRI checked against the
 *   lock's / registry's integrity → unpacked into the cache → loaded like any package
 *   (the manifest's and the binding's sha256 pins are checked by the loader)
 *
 * Integrity and signature failures are AMBIT_ERR_INTEGRITY; everything else (registry
 * unreachable, no such package or version, a ref missing from a frozen lock) is an
 * Error whose message says what to do, placed in the config by the caller.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import semver from 'semver';
import { AmbitError, errorMessage } from '../../deps.js';
import { checkIntegrity, parseIntegrity } from './integrity.js';
import { LOCKFILE_VERSION, readLock, writeLock, type FilterLock, type LockEntry } from './lock.js';
import type { FilterSourceConfig } from './schema.js';
import { checkSignatures, type DistSignature, type RegistryKey } from './signatures.js';
import { layOut, readTarball } from './tarball.js';

interface VersionMeta {
  name?: string;
  version?: string;
  ambit?: unknown;
  dist?: { tarball?: string; integrity?: string; shasum?: string; signatures?: DistSignature[]; attestations?: { url?: string } };
}
interface Packument {
  name?: string;
  'dist-tags'?: Record<string, string>;
  versions?: Record<string, VersionMeta>;
  time?: Record<string, string>;
}

export interface ResolvedFromRegistry {
  /** The unpacked package folder in the cache. */
  dir: string;
  entry: LockEntry;
  /** True when the lock answered (no version question to the registry). */
  fromLock: boolean;
}

/** The default cache: `$AMBIT_CACHE_DIR/filters`, else `~/.cache/ambit/filters`. */
export function defaultFilterCacheDir(): string {
  return path.join(process.env.AMBIT_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'ambit'), 'filters');
}

export class RegistrySource {
  readonly registry: string;
  readonly cacheDir: string;
  readonly lockPath: string;
  private lock: FilterLock | undefined;
  private readonly used = new Map<string, LockEntry>();
  private keys: Promise<RegistryKey[] | undefined> | undefined;

  private constructor(private readonly settings: FilterSourceConfig, configDir: string) {
    this.registry = settings.registry.endsWith('/') ? settings.registry : `${settings.registry}/`;
    this.cacheDir = path.resolve(configDir, settings.cacheDir ?? defaultFilterCacheDir());
    this.lockPath = path.resolve(configDir, settings.lockFile);
  }

  /** Reads the lock file (absent: an empty lock). */
  static async open(settings: FilterSourceConfig, configDir: string): Promise<RegistrySource> {
    const source = new RegistrySource(settings, configDir);
    source.lock = await readLock(source.lockPath);
    return source;
  }

  /** Resolves `ref` (as the config writes it) to an unpacked, verified package in the cache. */
  async resolve(ref: string, name: string, range: string | undefined): Promise<ResolvedFromRegistry> {
    const locked = this.lock?.filters[ref];
    if (locked && locked.name === name && (range === undefined || semver.satisfies(locked.version, range))) {
      const dir = await this.unpack(locked, 'in the filter lock', () => this.download(locked.resolved, `${name}@${locked.version}`));
      this.used.set(ref, locked);
      return { dir, entry: locked, fromLock: true };
    }
    if (this.settings.frozenLock) {
      throw new Error(locked
        ? `the filter lock ${this.lockPath} has ${name}@${locked.version} for ${ref}, which no longer matches the ref, and filterSource.frozenLock is set; update the lock (run once without frozenLock)`
        : `${ref} is not in the filter lock ${this.lockPath} and filterSource.frozenLock is set; resolve it once without frozenLock and commit the lock`);
    }
    const packument = await this.packument(name);
    const version = pickVersion(packument, range);
    if (!version) {
      const known = Object.keys(packument.versions ?? {}).sort(semver.compare);
      throw new Error(`no version of ${name} in ${this.registry} satisfies ${range ?? '*'} (it has ${known.slice(-8).join(', ') || 'none'}); change the range`);
    }
    const meta = packument.versions![version]!;
    const dist = meta.dist ?? {};
    if (!dist.tarball || !/^https?:\/\//.test(dist.tarball)) throw new Error(`${name}@${version} in ${this.registry} has no tarball URL`);
    const integrity = dist.integrity;
    if (!integrity || !parseIntegrity(integrity)) {
      throw new AmbitError('AMBIT_ERR_INTEGRITY', `${name}@${version} in ${this.registry} has no integrity (dist.integrity); refusing a package that cannot be checked`);
    }
    const signed = checkSignatures({ name, version, integrity }, dist.signatures, dist.signatures?.length ? await this.registryKeys() : undefined, packument.time?.[version]);
    if (signed.status === 'invalid') {
      throw new AmbitError('AMBIT_ERR_INTEGRITY', `${name}@${version} from ${this.registry}: its registry signature does not verify: ${signed.reason}; refusing it`);
    }
    if (signed.status === 'unsigned' && this.settings.requireSignatures) {
      throw new AmbitError('AMBIT_ERR_INTEGRITY', `${name}@${version} from ${this.registry} is not signed by the registry and filterSource.requireSignatures is set; refusing it`);
    }
    const entry: LockEntry = {
      name, version, resolved: dist.tarball, integrity,
      signatures: signed.status === 'verified' ? `verified ${signed.keyid}` : 'unsigned',
      provenance: dist.attestations ? 'present (not verified)' : 'none',
      wasmSha256: '',
    };
    const dir = await this.unpack(entry, 'the registry published', () => this.download(dist.tarball!, `${name}@${version}`));
    this.used.set(ref, entry);
    return { dir, entry, fromLock: false };
  }

  /**
   * Writes the lock with exactly the refs resolved since `open` (so it matches the
   * config), unless frozen. Returns whether the file changed.
   */
  async save(): Promise<boolean> {
    if (this.settings.frozenLock) return false;
    return writeLock(this.lockPath, { lockfileVersion: LOCKFILE_VERSION, filters: Object.fromEntries(this.used) });
  }

  private tarballPath(integrity: string): string {
    const sri = parseIntegrity(integrity)!;
    return path.join(this.cacheDir, 'tarballs', `${sri.algorithm}-${Buffer.from(sri.digest, 'base64').toString('hex')}.tgz`);
  }

  /**
   * The tarball of `entry` from the cache (or `fetchIt`), checked against its integrity,
   * unpacked into the cache; fills in `entry.wasmSha256` (or checks it, from a lock).
   */
  private async unpack(entry: LockEntry, expectedFrom: string, fetchIt: () => Promise<Uint8Array>): Promise<string> {
    const label = `${entry.name}@${entry.version}`;
    const cached = this.tarballPath(entry.integrity);
    let tgz: Uint8Array | undefined = await readFile(cached).catch(() => undefined);
    if (tgz && checkIntegrity(tgz, entry.integrity) !== undefined) {
      // A damaged cache entry: drop it and fetch the tarball again.
      await rm(cached, { force: true });
      tgz = undefined;
    }
    if (!tgz) {
      tgz = await fetchIt();
      const mismatch = checkIntegrity(tgz, entry.integrity);
      if (mismatch) {
        throw new AmbitError('AMBIT_ERR_INTEGRITY', `the tarball of ${label} (${entry.resolved}) does not match the integrity ${expectedFrom}: ${mismatch}; refusing it (a tampered or corrupted package)`);
      }
      await mkdir(path.dirname(cached), { recursive: true });
      const tmp = `${cached}.${process.pid}.tmp`;
      await writeFile(tmp, tgz);
      await rename(tmp, cached);
    }
    let files;
    try {
      files = await readTarball(tgz);
    } catch (e) {
      throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `the tarball of ${label} cannot be unpacked: ${errorMessage(e)}`);
    }
    const pkg = JSON.parse(files.get('package.json')!.toString('utf8')) as { name?: string; version?: string; ambit?: { filter?: unknown } };
    if (pkg.name !== entry.name || pkg.version !== entry.version) {
      throw new AmbitError('AMBIT_ERR_INTEGRITY', `the tarball of ${label} holds ${pkg.name}@${pkg.version}; refusing it`);
    }
    const wasmRel = typeof pkg.ambit?.filter === 'string' ? path.posix.normalize(pkg.ambit.filter) : undefined;
    const wasm = wasmRel === undefined ? undefined : files.get(wasmRel);
    if (!wasm) {
      throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `${label} is not an Ambit filter package: ${wasmRel ? `it does not contain ${wasmRel}` : 'its package.json has no "ambit": { "filter": … } field'}`);
    }
    const wasmSha256 = createHash('sha256').update(wasm).digest('hex');
    if (entry.wasmSha256 && entry.wasmSha256 !== wasmSha256) {
      throw new AmbitError('AMBIT_ERR_INTEGRITY', `${label}: its component has sha256 ${wasmSha256}, the filter lock says ${entry.wasmSha256}; refusing it`);
    }
    entry.wasmSha256 = wasmSha256;
    const dir = path.join(this.cacheDir, 'packages', `${entry.name.replace('/', '+')}@${entry.version}-${path.basename(cached, '.tgz').slice(7, 23)}`);
    await layOut(files, dir);
    return dir;
  }

  private headers(accept: string): Record<string, string> {
    const h: Record<string, string> = { accept, 'user-agent': 'ambit-node-proxy' };
    if (this.settings.tokenEnv) {
      const token = process.env[this.settings.tokenEnv];
      if (!token) throw new Error(`filterSource.tokenEnv names ${this.settings.tokenEnv}, which is not set in the environment`);
      h.authorization = `Bearer ${token}`;
    }
    return h;
  }

  private async get(url: string, accept: string, what: string): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(url, { headers: this.headers(accept), signal: AbortSignal.timeout(this.settings.timeoutMs), redirect: 'follow' });
    } catch (e) {
      const cause = (e as { cause?: unknown }).cause;
      throw new Error(`the filter registry ${this.registry} is unreachable (${what}: ${errorMessage(cause ?? e)}); with a filter lock (${this.lockPath}) and a warm cache a node starts without it`);
    }
    if (res.status === 404) throw new Error(`${what}: not found in ${this.registry} (404); check the package name and that it is published there`);
    if (res.status === 401 || res.status === 403) throw new Error(`${what}: ${this.registry} refused access (${res.status}); set filterSource.tokenEnv to a variable holding a token`);
    if (!res.ok) throw new Error(`${what}: ${this.registry} answered ${res.status} ${res.statusText}`);
    return res;
  }

  private async packument(name: string): Promise<Packument> {
    const url = `${this.registry}${name.startsWith('@') ? `@${encodeURIComponent(name.slice(1))}` : encodeURIComponent(name)}`;
    const res = await this.get(url, 'application/json', `the versions of ${name}`);
    const doc = (await res.json()) as Packument;
    if (typeof doc !== 'object' || doc === null || typeof doc.versions !== 'object') throw new Error(`${url} is not npm package metadata`);
    return doc;
  }

  private async download(url: string, label: string): Promise<Uint8Array> {
    const res = await this.get(url, 'application/octet-stream', `the tarball of ${label}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** The registry's signing keys, asked once; undefined when it publishes none. */
  private registryKeys(): Promise<RegistryKey[] | undefined> {
    this.keys ??= (async () => {
      try {
        const res = await this.get(`${this.registry}-/npm/v1/keys`, 'application/json', 'the registry\'s signing keys');
        return ((await res.json()) as { keys?: RegistryKey[] }).keys;
      } catch {
        return undefined;
      }
    })();
    return this.keys;
  }
}

/** npm's choice: the `latest` tag when it satisfies the range, else the highest version that does. */
export function pickVersion(packument: Packument, range: string | undefined): string | undefined {
  const versions = Object.keys(packument.versions ?? {}).filter((v) => semver.valid(v) !== null);
  const latest = packument['dist-tags']?.latest;
  if (latest && versions.includes(latest) && (range === undefined || semver.satisfies(latest, range))) return latest;
  return semver.maxSatisfying(versions, range ?? '*') ?? undefined;
}
