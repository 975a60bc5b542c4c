/**
 * The node-wide shared table of the filter capability `shared` (`src/shared-table.c`, built
 * into `build/Release/ambit_shared.node`): one file per scope in the node's shared directory,
 * mapped by every proxy process of the node, so a rate limit kept there holds across
 * `node:cluster` workers. The wasmtime engine compiles the same C file into its crate.
 *
 * Optional like the other addons: `available` says whether it loaded and `unavailableReason`
 * what to do when it did not; {@link openSharedTable} throws then.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** A value of the table and its version (never 0), as `shared-get` answers. */
export interface SharedTableEntry {
  value: string;
  version: number;
}

/** An opaque handle from the addon. */
type Handle = object;

interface NativeShared {
  open(dir: string, scope: string, maxKeys?: number): Handle;
  path(table: Handle): string;
  get(table: Handle, key: string, version: Uint32Array): string | undefined;
  set(table: Handle, key: string, value: string, version: number): boolean;
  add(table: Handle, key: string, delta: number): number;
}

/** Absolute path of the compiled shared-table addon. */
export const sharedAddonPath: string = fileURLToPath(new URL('../build/Release/ambit_shared.node', import.meta.url));

const HINT = 'run `npm run build` (or `npm run build -w @ambit/addon`; needs a C compiler, make and python3)';

function load(): { native: NativeShared; reason: undefined } | { native: undefined; reason: string } {
  if (process.env['AMBIT_DISABLE_ADDON'] === '1') return { native: undefined, reason: 'native addon disabled by AMBIT_DISABLE_ADDON=1' };
  if (process.platform !== 'linux') return { native: undefined, reason: `the shared-table addon is built for Linux only (this is ${process.platform})` };
  if (!existsSync(sharedAddonPath)) return { native: undefined, reason: `the shared-table addon is not built (${sharedAddonPath} is missing): ${HINT}` };
  try {
    const loaded = createRequire(import.meta.url)(sharedAddonPath) as NativeShared;
    if (typeof loaded.open !== 'function' || typeof loaded.add !== 'function') {
      return { native: undefined, reason: `the shared-table addon at ${sharedAddonPath} is stale: ${HINT}` };
    }
    return { native: loaded, reason: undefined };
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    return { native: undefined, reason: `the shared-table addon failed to load (${text.split('\n', 1)[0] ?? text}): ${HINT}` };
  }
}

const loaded = load();

/** True when the shared-table addon is loaded. */
export const available: boolean = loaded.native !== undefined;
/** When `available` is false: one line saying why and what to do. */
export const unavailableReason: string | undefined = loaded.reason;

/**
 * One scope's table. Errors carry `code`: `AMBIT_ERR_HOST_CALL` for a bad key, value or delta;
 * `AMBIT_ERR_SHARED_FULL` for `add` of a new key to a full table; `AMBIT_ERR_SHARED_TABLE` for a
 * damaged file or a bucket lock held too long by another process.
 */
export interface FileSharedTable {
  /** The file behind it. */
  readonly path: string;
  get(key: string): SharedTableEntry | undefined;
  /** Compare-and-set: stores `value` if the entry's version is `version` (0: the key must be absent). False too when a new key finds the table full. */
  set(key: string, value: string, version: number): boolean;
  /** Adds `delta` (truncated) to the integer at `key` (absent or not an integer: 0); returns the sum. */
  add(key: string, delta: number): number;
}

/** Keys a table holds unless its binding says otherwise (`maxKeys`). */
export const DEFAULT_SHARED_KEYS = 4096;
/** The most keys one table may hold. */
export const MAX_SHARED_KEYS = 262_144;

/**
 * Opens (creating on first use, sized for `maxKeys`) the table of `scope` in `dir`, which must
 * exist, be the proxy user's and not be writable by group or others. Every process and thread
 * that opens the same scope in the same directory shares its entries. Throws an Error with
 * code `AMBIT_ERR_SHARED_TABLE` saying why the directory or file cannot be used.
 */
export function openSharedTable(dir: string, scope: string, maxKeys = DEFAULT_SHARED_KEYS): FileSharedTable {
  const n = loaded.native;
  if (!n) throw new Error(loaded.reason);
  const h = n.open(dir, scope, maxKeys);
  const version = new Uint32Array(1);
  return {
    path: n.path(h),
    get: (key) => {
      const value = n.get(h, key, version);
      return value === undefined ? undefined : { value, version: version[0]! };
    },
    set: (key, value, version) => n.set(h, key, value, version),
    add: (key, delta) => n.add(h, key, delta),
  };
}
