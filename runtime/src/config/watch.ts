/**
 * Watches the mesh config file and the filter components it loaded, and calls
 * `onChange` once things have settled (trailing debounce, 200 ms by default).
 *
 * It watches the *folders* (fs.watch), not the files: editors and builds that replace
 * a file by writing a temporary one and renaming it over the original (vim, VS Code,
 * `ambit-filter build`, `npm install`) leave a file watcher on the old inode; a folder
 * watcher sees the new name appear. When a watched folder itself is removed or replaced
 * (`rm -rf dist && mkdir dist`), the nearest existing parent is watched until it is back.
 */
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

export interface WatchOptions {
  /** Quiet time before `onChange` fires. Default 200 ms. */
  debounceMs?: number;
  /** Keep the process alive while watching. Default true. */
  persistent?: boolean;
  /** Watcher errors that could not be recovered from; default: ignored. */
  onError?: (error: Error) => void;
}

export interface ConfigWatcher {
  /** Replaces the set of watched files (e.g. after a reload bound other filters). */
  update(files: readonly string[]): void;
  close(): void;
}

/**
 * Calls `onChange(changed)` with the absolute paths of the watched files that were
 * touched, once no event came for `debounceMs`.
 */
export function watchFiles(files: readonly string[], onChange: (changed: string[]) => void, options: WatchOptions = {}): ConfigWatcher {
  const debounceMs = options.debounceMs ?? 200;
  const persistent = options.persistent ?? true;
  const dirs = new Map<string, DirWatch>();
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const fire = () => {
    timer = undefined;
    if (closed || pending.size === 0) return;
    const changed = [...pending];
    pending.clear();
    onChange(changed);
  };
  const touched = (file: string) => {
    if (closed) return;
    pending.add(file);
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
    if (!persistent) timer.unref();
  };

  const update = (list: readonly string[]) => {
    const wanted = new Map<string, Set<string>>();
    for (const f of list) {
      const abs = path.resolve(f);
      const dir = path.dirname(abs);
      let names = wanted.get(dir);
      if (!names) wanted.set(dir, (names = new Set()));
      names.add(path.basename(abs));
    }
    for (const [dir, w] of dirs) {
      if (!wanted.has(dir)) {
        w.close();
        dirs.delete(dir);
      }
    }
    for (const [dir, names] of wanted) {
      const w = dirs.get(dir);
      if (w) w.names = names;
      else dirs.set(dir, new DirWatch(dir, names, touched, persistent, options.onError));
    }
  };

  update(files);
  return {
    update: (list) => {
      if (!closed) update(list);
    },
    close: () => {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of dirs.values()) w.close();
      dirs.clear();
    },
  };
}

/** One folder's watcher; falls back to an ancestor while the folder is missing. */
class DirWatch {
  private watcher: FSWatcher | undefined;
  /** The folder's inode when watched directly, to notice it being replaced. */
  private ino: number | undefined;
  /** Watching an ancestor, waiting for `dir` to exist again. */
  private waiting = false;
  private closed = false;
  private checking = false;
  /** Another recheck was asked for while one was running. */
  private again = false;

  constructor(
    readonly dir: string,
    public names: Set<string>,
    private readonly touched: (file: string) => void,
    private readonly persistent: boolean,
    private readonly onError: ((e: Error) => void) | undefined,
  ) {
    this.attach(false);
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Watches the folder itself, or the nearest existing ancestor when it is missing. */
  private attach(announce: boolean): void {
    if (this.closed) return;
    this.watcher?.close();
    this.watcher = undefined;
    try {
      this.watcher = watch(this.dir, { persistent: this.persistent }, (_event, name) => this.onEvent(name));
      this.watcher.on('error', () => this.recheck());
      this.waiting = false;
      void stat(this.dir).then((s) => { this.ino = s.ino; }, () => this.recheck());
      // The folder came back (or was replaced): its files may be new.
      if (announce) for (const n of this.names) this.touched(path.join(this.dir, n));
      return;
    } catch {
      // missing: watch upward
    }
    this.waiting = true;
    this.ino = undefined;
    let parent = path.dirname(this.dir);
    for (;;) {
      try {
        this.watcher = watch(parent, { persistent: this.persistent }, () => this.recheck());
        this.watcher.on('error', () => this.recheck());
        // It may have appeared between the failed watch and this one.
        this.recheck();
        return;
      } catch (e) {
        const up = path.dirname(parent);
        if (up === parent) {
          this.onError?.(e as Error);
          return;
        }
        parent = up;
      }
    }
  }

  private onEvent(name: string | Buffer | null): void {
    if (this.closed) return;
    if (name === null) {
      // The platform did not say which file: assume any of ours.
      for (const n of this.names) this.touched(path.join(this.dir, n));
    } else {
      const n = name.toString();
      if (this.names.has(n)) this.touched(path.join(this.dir, n));
    }
    // A rename in the folder may be the folder itself going away.
    this.recheck();
  }

  /** Re-attaches when the folder disappeared, was replaced, or reappeared. */
  private recheck(): void {
    if (this.closed) return;
    if (this.checking) {
      this.again = true;
      return;
    }
    this.checking = true;
    const done = () => {
      this.checking = false;
      if (this.again && !this.closed) {
        this.again = false;
        this.recheck();
      }
    };
    stat(this.dir).then(
      (s) => {
        if (!this.closed && s.isDirectory() && (this.waiting || (this.ino !== undefined && s.ino !== this.ino))) this.attach(true);
        done();
      },
      () => {
        if (!this.closed && !this.waiting) {
          // Gone: its files are gone too; watch upward until it is back.
          for (const n of this.names) this.touched(path.join(this.dir, n));
          this.attach(false);
        }
        done();
      },
    );
  }
}

/**
 * Watches a loaded config's file and the components of its resolved filters. After a
 * reload, pass the new ones to `update` (`[loaded.path, ...resolved.wasmFiles]`).
 */
export function watchMeshConfig(
  loaded: { path: string },
  resolved: { wasmFiles: readonly string[] } | undefined,
  onChange: (changed: string[]) => void,
  options: WatchOptions = {},
): ConfigWatcher {
  return watchFiles([loaded.path, ...(resolved?.wasmFiles ?? [])], onChange, options);
}
