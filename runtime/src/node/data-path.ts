/**
 * Which data path serves a node's connections (`proxy.dataPath`, or `AMBIT_DATA_PATH`):
 * - `native`: Rust threads in `@ambit/native`, or a coded error saying why it cannot serve;
 * - `node`: the Node.js data path;
 * - `auto` (default): native where it can serve this config, else node, with one log line
 *   saying why it stepped down.
 *
 * The native path can serve when the addon with the data path loads, the filter engine is
 * wasmtime and no more than one process serves the listeners (the native path spreads over the
 * cores with its own threads, `proxy.native.threads`; `node:cluster` workers run the node path).
 * `auto` also keeps on the node path a config with what the native path does not serve yet
 * ({@link nativeGaps}), unless the config sets `identity`: mTLS between nodes (HBONE) is served
 * by the native data path only, so such a config runs there (the gaps logged as warnings), and
 * one the native path cannot serve stops with a coded error saying why.
 */
import { AmbitError, type AmbitErrorCode } from '../deps.js';
import type { MeshConfig } from '../config/index.js';
import { DATA_PATHS } from '../config/schema.js';
import { loadNative } from '../filters/wasmtime/native.js';

export type DataPathSetting = MeshConfig['proxy']['dataPath'];
export type DataPathKind = 'node' | 'native';

/** The environment variable that overrides `proxy.dataPath`. */
export const DATA_PATH_ENV = 'AMBIT_DATA_PATH';

export interface DataPathDecision {
  kind: DataPathKind;
  /** What was asked for, and where: `dataPath: auto` or `AMBIT_DATA_PATH=native`. */
  asked: string;
  /** Why `auto` chose the node path. */
  reason?: string;
  /** What the config asks for that the native path (asked for explicitly) does not serve: to log as warnings. */
  warnings: string[];
  /** The one log line: `data path: node (dataPath: auto; <reason>)`. */
  line: string;
}

export interface DataPathFacts {
  /** The filter engine the node runs (or will run). */
  engine: 'v8' | 'wasmtime';
  /** Processes serving the listeners (`--workers`, `proxy.workers`); 1 when not a `node:cluster` worker. */
  workers: number;
}

/** `proxy.dataPath`, unless {@link DATA_PATH_ENV} names a data path. */
export function dataPathSetting(config: MeshConfig): { setting: DataPathSetting; asked: string } {
  const env = process.env[DATA_PATH_ENV];
  if (env !== undefined && env !== '') {
    if (!(DATA_PATHS as readonly string[]).includes(env)) {
      throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `${DATA_PATH_ENV}=${env} names no data path: use ${DATA_PATHS.join(', ')}, or unset it to use proxy.dataPath`);
    }
    return { setting: env as DataPathSetting, asked: `${DATA_PATH_ENV}=${env}` };
  }
  return { setting: config.proxy.dataPath, asked: `dataPath: ${config.proxy.dataPath}` };
}

/** Why the native data path cannot serve this node, with the error code `native` would fail with; undefined when it can. */
export function nativeBlocker(config: MeshConfig, facts: DataPathFacts): { code: AmbitErrorCode; reason: string; fix: string } | undefined {
  const load = loadNative();
  if (!load.ok) {
    return { code: 'AMBIT_ERR_ENGINE_UNAVAILABLE', reason: `@ambit/native cannot load: ${load.reason}`, fix: 'install cargo and run `npm run build` to build it' };
  }
  if (!load.native.NativeProxy) {
    return { code: 'AMBIT_ERR_ENGINE_UNAVAILABLE', reason: 'this build of @ambit/native has no data path', fix: 'rebuild it: npm run build' };
  }
  if (facts.engine !== 'wasmtime') {
    return { code: 'AMBIT_ERR_CONFIG_INVALID', reason: `the filter engine is ${facts.engine} and the native data path runs filters on wasmtime only`, fix: 'set proxy.engine to wasmtime or auto' };
  }
  if (facts.workers > 1) {
    return {
      code: 'AMBIT_ERR_CONFIG_INVALID',
      reason: `${facts.workers} node:cluster workers were asked for (--workers or proxy.workers) and the native data path runs in one process, on proxy.native.threads threads`,
      fix: 'drop --workers and proxy.workers (or set them to 1)',
    };
  }
  return undefined;
}

/** The engine `proxy.engine` will give, before it is made: wasmtime where the addon loads, unless v8 is asked for. */
export function expectedEngine(config: MeshConfig): DataPathFacts['engine'] {
  return config.proxy.engine === 'v8' || !loadNative().ok ? 'v8' : 'wasmtime';
}

/** Decides the data path; `native` asked for where it cannot serve is a coded error saying what to do. */
export function chooseDataPath(config: MeshConfig, facts: DataPathFacts): DataPathDecision {
  const { setting, asked } = dataPathSetting(config);
  const mtls = config.identity !== undefined;
  if (setting === 'node') {
    if (mtls) throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `the config sets identity (mTLS between nodes, HBONE), which only the native data path serves, and ${asked} asks for the node data path: ask for data path auto or native, or remove identity`);
    return { kind: 'node', asked, line: `data path: node (${asked})`, warnings: [] };
  }
  const blocker = nativeBlocker(config, facts);
  if (setting === 'native' || mtls) {
    if (blocker) {
      const why = setting === 'native' ? `the native data path (${asked}) cannot serve this node` : 'the config sets identity (mTLS between nodes, HBONE), which only the native data path serves, and it cannot serve this node';
      throw new AmbitError(blocker.code, `${why}: ${blocker.reason}; ${blocker.fix}${mtls ? '' : ', or ask for data path auto or node'}`);
    }
    return { kind: 'native', asked, line: `data path: native (${asked})`, warnings: nativeGaps(config) };
  }
  const reason = blocker?.reason ?? nativeGaps(config)[0];
  if (reason) return { kind: 'node', asked, reason, line: `data path: node (${asked}; ${reason})`, warnings: [] };
  return { kind: 'native', asked, line: `data path: native (${asked})`, warnings: [] };
}

/** What the config asks for that the native data path does not serve yet. */
export function nativeGaps(config: MeshConfig): string[] {
  const exposing = config.bindings.flatMap((b) => b.filters.filter((f) => f.exposeErrors).map((f) => `${b.name}/${f.name ?? f.ref}`));
  return exposing.length > 0
    ? [`exposeErrors is set on ${exposing.join(', ')} and the native data path's 503s for failing filters carry no exception text`]
    : [];
}
