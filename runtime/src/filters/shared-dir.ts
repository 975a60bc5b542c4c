/**
 * The node's shared directory: where the tables of the filter capability `shared` live, one
 * file per binding scope (`runtime/addon/src/shared-table.c`), mapped by every proxy process
 * of the node. That is what makes a rate limit one limit for the node, not one per
 * `node:cluster` worker.
 *
 * - The process that starts the node (the cluster primary, or a lone `ambit run`) creates
 *   `ambit-shared-<pid>-<start time>-<n>` under `/dev/shm` (memory, not disk; the OS temp
 *   folder where `/dev/shm` is missing) and hands it to its workers in {@link SHARED_DIR_ENV}.
 * - The creator removes it when it stops. A directory left by a process that died is removed
 *   by the next node that starts: its name says which process made it, and when.
 * - `AMBIT_SHARED_DIR` set by an operator names a directory to use instead; it is never removed.
 * - Its name is predictable (a pid and a start time are public), so a directory is trusted only
 *   when it is this user's, not a symlink, and not writable by group or others: a node makes its
 *   own with a plain `mkdir` (0700) that fails on a planted one, and refuses an existing
 *   `AMBIT_SHARED_DIR` that another user could write to (AMBIT_ERR_SHARED_TABLE naming it and the fix).
 */
import { accessSync, constants, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AmbitError, errorMessage } from '../deps.js';

/** Environment variable naming the shared directory to use (set by the primary for its workers). */
export const SHARED_DIR_ENV = 'AMBIT_SHARED_DIR';

const PREFIX = 'ambit-shared-';
const NAME = /^ambit-shared-(\d+)-(\d+)-\d+$/;
let created = 0;

export interface SharedDir {
  readonly path: string;
  /** Removes the directory if this process made it. */
  release(): void;
}

/** Where new shared directories go: `/dev/shm` when writable, else the OS temp folder. */
export function sharedDirBase(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}

/** A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), or undefined when it is gone. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Removes directories of processes that are gone (or whose pid now belongs to another process). */
function sweep(base: string): void {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return;
  }
  for (const name of names) {
    const m = NAME.exec(name);
    if (!m || startTime(Number(m[1])) === m[2]) continue;
    try {
      rmSync(path.join(base, name), { recursive: true, force: true });
    } catch {
      // Another user's, or already going: not ours to insist on.
    }
  }
}

/** mkdir -p (0700), or AMBIT_ERR_SHARED_TABLE saying what to do. */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_SHARED_TABLE', `cannot make the shared directory ${dir} for filters' shared storage: ${errorMessage(e)}; set ${SHARED_DIR_ENV} to a writable directory`);
  }
}

/**
 * Refuses a directory another user could plant tables in: not a directory (or a symlink),
 * owned by another user, or writable by group or others. AMBIT_ERR_SHARED_TABLE names it and the fix.
 */
export function checkSharedDir(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.geteuid?.() ?? st.uid;
  const why = !st.isDirectory() ? `is not a directory${st.isSymbolicLink() ? ' (a symlink)' : ''}`
    : st.uid !== uid ? `is owned by uid ${st.uid}, not by the proxy's user (uid ${uid})`
      : (st.mode & 0o022) !== 0 ? `is writable by group or others (mode ${(st.mode & 0o777).toString(8)})`
        : undefined;
  if (why) {
    throw new AmbitError('AMBIT_ERR_SHARED_TABLE', `refusing shared directory ${dir}: it ${why}; another user could plant or change filters' shared tables there: make it 0700 and owned by the proxy's user (chown; chmod 700), or set ${SHARED_DIR_ENV} to one that is`);
  }
}

/**
 * The shared directory this process should use: the one in `AMBIT_SHARED_DIR` (or `given`),
 * else a new one of its own. Throws AMBIT_ERR_SHARED_TABLE when it cannot be made.
 */
export function openSharedDir(given: string | undefined = process.env[SHARED_DIR_ENV]): SharedDir {
  if (given) {
    makeDir(given);
    checkSharedDir(given);
    return { path: given, release: () => {} };
  }
  const base = sharedDirBase();
  sweep(base);
  const dir = makeOwnDir(base);
  let released = false;
  return {
    path: dir,
    release: () => {
      if (released) return;
      released = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A new directory of this process's under `base`: a plain mkdir, which fails where a directory
 * (planted by someone who guessed the name) already is; such names are skipped.
 */
function makeOwnDir(base: string): string {
  for (let tries = 0; ; tries++) {
    const dir = path.join(base, `${PREFIX}${process.pid}-${startTime(process.pid) ?? 0}-${created++}`);
    try {
      mkdirSync(dir, { mode: 0o700 });
      checkSharedDir(dir);
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && tries < 100) continue;
      if (e instanceof AmbitError) throw e;
      throw new AmbitError('AMBIT_ERR_SHARED_TABLE', `cannot make the shared directory ${dir} for filters' shared storage: ${errorMessage(e)}; set ${SHARED_DIR_ENV} to a writable directory`);
    }
  }
}

/**
 * A filter engine's view of the shared directory: `AMBIT_SHARED_DIR` or the one the engine
 * was given, else its own, made on first use (an engine whose filters never use `shared`
 * makes none) and removed by {@link LazySharedDir.release}.
 */
export class LazySharedDir {
  private dir: SharedDir | undefined;
  constructor(private readonly given?: string) {}

  /** The directory, made on first use; AMBIT_ERR_SHARED_TABLE when it cannot be. */
  get path(): string {
    this.dir ??= openSharedDir(this.given ?? process.env[SHARED_DIR_ENV]);
    return this.dir.path;
  }

  release(): void {
    this.dir?.release();
  }
}
