/**
 * Loading `@ambit/native`, the wasmtime addon. It is optional: where it was not built
 * (no cargo) or cannot load (another platform, a broken binary), `loadNative` says why
 * in one line and the node uses the V8 engine.
 */
import { createRequire } from 'node:module';

/** The addon's surface (`runtime/native/src/lib.rs`). */
export interface NativeEngineHandle {
  loadFilter(job: number, handle: number, wasm: Buffer, spec: string): void;
  unloadFilter(handle: number): void;
  defineChain(id: number, handles: number[]): void;
  dropChain(id: number): void;
  run(job: number, chain: number, input: string, load?: Int32Array | null): void;
  info(): string;
  probeInstances(handle: number, count: number): string;
  benchPhase(chain: number, input: string, iterations: number): string;
  close(): void;
}

/** The native data path (`runtime/native/src/proxy`). */
export interface NativeProxyHandle {
  setState(spec: string, engine: NativeEngineHandle): void;
  /** The mesh TLS material (JSON `MeshTlsSpec`, native-path/identities.ts); answers how many identities it holds. */
  setIdentities(spec: string): number;
  /** HBONE's counters, JSON `{ server, client }` (runtime/native/src/proxy/hbone/stats.rs). */
  hboneStats(): string;
  listen(listeners: string): string;
  takeRecords(): string;
  info(): string;
  close(drainMs: number): void;
  closed(): boolean;
}

export interface NativeModule {
  NativeEngine: new (options: string, onDone: (job: number, result: string) => void) => NativeEngineHandle;
  NativeProxy?: new (options: string) => NativeProxyHandle;
  /** The benchmarks' fixed-rate HTTP/1.1 generator (`src/loadgen.rs`): JSON of its counts and latencies in µs. */
  fixedRateLoad?(host: string, port: number, path: string, rate: number, seconds: number, connections: number): string;
  wasmtimeVersion(): string;
}

export type NativeLoad = { ok: true; native: NativeModule } | { ok: false; reason: string };

let cached: NativeLoad | undefined;

export function loadNative(): NativeLoad {
  if (cached) return cached;
  try {
    const native = createRequire(import.meta.url)('@ambit/native') as NativeModule;
    if (typeof native.NativeEngine !== 'function') throw new Error('the addon does not export NativeEngine');
    cached = { ok: true, native };
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
    cached = { ok: false, reason: first };
  }
  return cached;
}
