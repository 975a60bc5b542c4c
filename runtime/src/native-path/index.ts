/**
 * The native data path (`proxy.dataPath: native`): connections are served by Rust threads in
 * `@ambit/native` (`runtime/native/src/proxy`), filters run inline on the wasmtime engine.
 * This side keeps what is not per request: it hands the state snapshot over at start and at
 * each reload (requests in flight keep theirs), and turns the batched records into the
 * access log and metrics.
 *
 * With `identity` set, mTLS between nodes runs here too: the native side holds the local
 * workloads' certificates (`identities.ts`), listens for HBONE and tunnels traffic for
 * workloads on other nodes (`runtime/native/src/proxy/hbone`).
 */
import { AmbitError } from '../deps.js';
import { loadNative, type NativeProxyHandle } from '../filters/wasmtime/native.js';
import type { WasmtimeEngine } from '../filters/wasmtime/engine.js';
import type { BuiltState } from '../node/state.js';
import type { ListenerSpec } from '../proxy/proxy.js';
import type { Telemetry } from '../telemetry/types.js';
import { FILTER_DURATION_BUCKETS, REQUEST_DURATION_BUCKETS } from '../telemetry/metrics.js';
import type { CertificateStore } from '../identity/store.js';
import type { HboneStats } from './hbone-stats.js';
import { syncIdentities } from './identities.js';
import { deliverRecords } from './records.js';
import { nativeStateSpec } from './spec.js';
import { failureMapper } from '../filters/report-failures.js';
import type { FilterFailure } from '../filters/engine.js';

function mapperOf(state: BuiltState): (f: FilterFailure) => FilterFailure {
  return failureMapper([...state.resolved.filters.values()].map((f) => f.binding));
}

export interface NativeDataPathOptions {
  listeners: ListenerSpec[];
  state: BuiltState;
  engine: WasmtimeEngine;
  telemetry: Telemetry;
  /** Data-path threads; default: the number of CPU cores. */
  threads?: number;
  maxConnections?: number;
  /** How often records are taken; default 100 ms. */
  recordsEveryMs?: number;
  /** mTLS between nodes: the certificate store of the node's workloads and where HBONE listens. */
  mtls?: { store: CertificateStore; listen: { address: string; port: number } };
}

export class NativeDataPath {
  private current: BuiltState;
  private readonly native: NativeProxyHandle;
  private bound: Record<string, { address: string; port: number }> = {};
  private timer: NodeJS.Timeout | undefined;
  private unsync: (() => void) | undefined;
  /** HBONE's counters (with `identity`), in the Node data path's shape: metrics and `/config_dump` read them. */
  readonly tunnels: { stats(): HboneStats } | undefined;
  /** Maps the failures in the records to the filters' TypeScript sources, by the current snapshot's filters. */
  private mapFailure: (f: FilterFailure) => FilterFailure;

  constructor(private readonly options: NativeDataPathOptions) {
    const load = loadNative();
    if (!load.ok || !load.native.NativeProxy) {
      throw new AmbitError('AMBIT_ERR_ENGINE_UNAVAILABLE', `proxy.dataPath native needs @ambit/native with the data path: ${load.ok ? 'this build has no NativeProxy (rebuild: npm run build)' : load.reason}`);
    }
    this.current = options.state;
    this.mapFailure = mapperOf(options.state);
    this.native = new load.native.NativeProxy(JSON.stringify({
      threads: options.threads,
      maxConnections: options.maxConnections,
      buckets: { request: REQUEST_DURATION_BUCKETS, filter: FILTER_DURATION_BUCKETS },
      accessLog: options.telemetry.logsRequests,
    }));
    this.native.setState(JSON.stringify(nativeStateSpec(options.state, { mtls: options.mtls !== undefined })), options.engine.nativeHandle());
    if (options.mtls) this.unsync = syncIdentities(this.native, options.mtls.store, options.telemetry);
    const native = this.native;
    this.tunnels = options.mtls ? { stats: () => JSON.parse(native.hboneStats()) as HboneStats } : undefined;
  }

  get state(): BuiltState {
    return this.current;
  }

  async start(): Promise<void> {
    const hbone = this.options.mtls ? [{ name: 'hbone', direction: 'inbound', hbone: true, ...this.options.mtls.listen }] : [];
    this.bound = JSON.parse(this.native.listen(JSON.stringify([...this.options.listeners, ...hbone]))) as Record<string, { address: string; port: number }>;
    for (const [name, a] of Object.entries(this.bound)) this.options.telemetry.info(`listening: ${name} on ${a.address}:${a.port} (native data path)`);
    this.timer = setInterval(() => this.pump(), this.options.recordsEveryMs ?? 100);
    this.timer.unref();
  }

  /** Takes what the native side counted and recorded since the last take. */
  pump(): number {
    return deliverRecords(this.native.takeRecords(), this.options.telemetry, this.mapFailure);
  }

  addresses(): Record<string, { address: string; port: number }> {
    return { ...this.bound };
  }

  info(): Record<string, unknown> {
    return JSON.parse(this.native.info()) as Record<string, unknown>;
  }

  /** Swaps in a new snapshot; the old one's chains close once Node-side users are done (native requests hold their own references). */
  async swap(next: BuiltState): Promise<void> {
    this.native.setState(JSON.stringify(nativeStateSpec(next, { mtls: this.options.mtls !== undefined })), this.options.engine.nativeHandle());
    const old = this.current;
    this.current = next;
    this.mapFailure = mapperOf(next);
    await old.close();
  }

  async close(drainMs = 5_000): Promise<void> {
    this.unsync?.();
    this.native.close(drainMs);
    while (!this.native.closed()) await new Promise((r) => setTimeout(r, 20));
    if (this.timer) clearInterval(this.timer);
    this.pump();
    await this.current.close(0);
  }
}
