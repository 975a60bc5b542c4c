/**
 * `ambit run`: one node proxy process from a mesh config file.
 *
 *   load + validate config → resolve filters → engine → state (routes, chains)
 *   → listeners → admin → watch: on change, build a new state and swap it in;
 *     a config that fails validation leaves the old one serving and says why.
 *
 * `cluster.ts` runs several of these as `node:cluster` workers sharing the listeners.
 */
import { Registry } from 'prom-client';
import { resolveFilters, type LoadedMeshConfig, type ResolvedFilters } from '../config/index.js';
import { errorMessage } from '../deps.js';
import type { FilterEngine } from '../filters/engine.js';
import { chooseEngine } from '../filters/choose.js';
import { startAdminServer, registryMetrics, type AdminServer } from '../admin/index.js';
import { NodeProxy, type ListenerSpec } from '../proxy/proxy.js';
import { originalDstSupport } from '../proxy/original-dst.js';
import { createTelemetry, type AccessLogDestination, type AmbitTelemetry } from '../telemetry/index.js';
import { buildState, EndpointRegistry, type BuiltState } from './state.js';
import { configDump } from './config-dump.js';
import { startIdentity, type NodeIdentity } from './identity.js';
import { registerMeshMetrics } from '../telemetry/mesh-metrics.js';
import { startCapture, type Capture } from '../capture/index.js';
import { registerCaptureMetrics } from '../capture/metrics.js';
import { fileSource, type ConfigSource, type ReloadOutcome, type SourceWatch } from './source.js';
import { NativeDataPath } from '../native-path/index.js';
import { WasmtimeEngine } from '../filters/wasmtime/engine.js';
import { chooseDataPath, type DataPathDecision } from './data-path.js';

export interface RunOptions {
  /** The mesh config file (YAML); ignored when `source` is given. */
  config: string;
  /** Where configs come from instead of the file (the controller's stream). */
  source?: ConfigSource;
  accessLog?: AccessLogDestination;
  logLevel?: string;
  /** Serve the admin API from this process (off in cluster workers: the primary serves it). */
  admin?: boolean;
  /** Watch the config and filter files and reload on change. Default true. */
  watch?: boolean;
  /** Overrides for tests: listen on these ports instead of the config's (0: any free port). */
  ports?: { outbound?: number; inbound?: number; admin?: number; hbone?: number };
  /** Share a registry (cluster workers hand theirs to the primary). */
  registry?: Registry;
  /** Install and follow traffic capture (eBPF or nftables) from the config. Default: where the admin API runs. */
  capture?: boolean;
  /** Processes serving the listeners, this one included (`node:cluster` workers pass theirs). Default 1. */
  workers?: number;
}

export interface RunningNode {
  readonly telemetry: AmbitTelemetry;
  /** The data path serving connections: Node's or the native one (`proxy.dataPath`, see ./data-path.ts). */
  readonly proxy: NodeProxy | NativeDataPath;
  /** Which data path serves, and why. */
  readonly dataPath: DataPathDecision;
  readonly admin: AdminServer | undefined;
  readonly state: BuiltState;
  readonly engine: FilterEngine;
  /** The CA and certificate store, when the config sets `identity` (mTLS between nodes). */
  readonly identity: NodeIdentity | undefined;
  /** Traffic capture (eBPF or nftables), when this process owns it. */
  readonly capture: Capture | undefined;
  /** Loads the config again and swaps it in; false (and the old state kept) when it fails. */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export async function runNode(options: RunOptions): Promise<RunningNode> {
  const registry = options.registry ?? new Registry();
  const telemetry = createTelemetry({ registry, accessLog: options.accessLog ?? 'stdout', level: options.logLevel });
  const source = options.source ?? fileSource(options.config);
  let loaded: LoadedMeshConfig;
  let resolved: ResolvedFilters;
  try {
    loaded = await source.load();
    for (const w of loaded.warnings) telemetry.warn(`config: ${w.file}${w.line ? `:${w.line}:${w.col ?? 1}` : ''}: ${w.pointer}: ${w.message}`);
    resolved = await resolveFilters(loaded);
    for (const n of resolved.notes) telemetry.info(`filters: ${n}`);
  } catch (e) {
    await telemetry.flush();
    throw e;
  }
  const config = loaded.config;
  const engine = chooseEngine(config.proxy.engine, {
    v8Threads: config.proxy.filterThreads,
    wasmtime: config.proxy.wasmtime,
    onLog: (f, level, m) => telemetry.filterLog(f, level, m),
    onCounter: (f, n, d) => telemetry.filterCounter(f, n, d),
    say: (line) => telemetry.info(line),
  });
  const endpoints = new EndpointRegistry();
  let version = 1;
  let state = await buildState(loaded, resolved, engine, endpoints, version);
  telemetry.reloadResult(true);

  const odst = originalDstSupport();
  if (odst.unavailable) telemetry.warn(`SO_ORIGINAL_DST unavailable, listeners use their configured target: ${odst.unavailable}`);
  const outboundTarget = state.mesh.outboundTarget;
  const listeners: ListenerSpec[] = [
    {
      name: 'outbound', direction: 'outbound', address: config.proxy.outbound.address, port: options.ports?.outbound ?? config.proxy.outbound.port,
      target: outboundTarget ? targetAddress(outboundTarget) : undefined,
    },
    { name: 'inbound', direction: 'inbound', address: config.proxy.inbound.address, port: options.ports?.inbound ?? config.proxy.inbound.port },
  ];
  let identity: NodeIdentity | undefined;
  if (config.identity) {
    try {
      identity = await startIdentity(config, loaded.path, telemetry, source.remoteIssuer);
    } catch (e) {
      await state.close(0);
      await engine.close();
      await telemetry.flush();
      throw e;
    }
  }
  const mtls = identity ? {
    store: identity.store,
    listen: { address: config.proxy.hbone.address, port: options.ports?.hbone ?? config.proxy.hbone.port },
  } : undefined;
  let proxy: NodeProxy | NativeDataPath;
  let dataPath: DataPathDecision;
  try {
    dataPath = chooseDataPath(config, { engine: engine instanceof WasmtimeEngine ? 'wasmtime' : 'v8', workers: options.workers ?? 1 });
    telemetry.info(dataPath.line);
    for (const w of dataPath.warnings) telemetry.warn(`data path: ${w}`);
    proxy = dataPath.kind === 'native' && engine instanceof WasmtimeEngine
      ? new NativeDataPath({
        listeners, state, engine, telemetry, threads: config.proxy.native.threads, maxConnections: config.proxy.native.maxConnections,
        ...(mtls ? { mtls } : {}),
      })
      : new NodeProxy({ listeners, state, telemetry, originalDst: odst.reader });
  } catch (e) {
    identity?.close();
    await state.close(0);
    await engine.close();
    await telemetry.flush();
    throw e;
  }
  try {
    await proxy.start();
  } catch (e) {
    identity?.close();
    throw e;
  }
  if (identity && proxy instanceof NativeDataPath && proxy.tunnels) registerMeshMetrics(registry, proxy.tunnels, identity.store);
  // Capture once the listener is up: a captured connect must find it.
  const capture = (options.capture ?? options.admin !== false)
    ? await startCapture(config, (level, message) => telemetry[level](message))
    : undefined;
  if (capture) registerCaptureMetrics(registry, capture);

  let admin: AdminServer | undefined;
  if (options.admin !== false) {
    admin = await startAdminServer({
      address: config.proxy.admin.address,
      port: options.ports?.admin ?? config.proxy.admin.port,
      ready: () => ({ ready: true }),
      configDump: () => configDump(state, engine, proxy, dataPath, odst.unavailable, identity, capture?.status()),
      metrics: proxy instanceof NativeDataPath
        // The native data path's records so far go into the metrics before they are read.
        ? (() => { const read = registryMetrics(registry); return () => { (proxy as NativeDataPath).pump(); return read(); }; })()
        : registryMetrics(registry),
    });
    telemetry.info(`admin API on http://${admin.address().address}:${admin.address().port}/`);
  }

  let reloading: Promise<ReloadOutcome> = Promise.resolve({ ok: true });
  let watcher: SourceWatch | undefined;
  const reloadOnce = async (): Promise<ReloadOutcome> => {
    try {
      const nextLoaded = await source.load();
      const nextResolved = await resolveFilters(nextLoaded);
      for (const n of nextResolved.notes) telemetry.info(`filters: ${n}`);
      const next = await buildState(nextLoaded, nextResolved, engine, endpoints, ++version);
      if (nextLoaded.config.proxy.dataPath !== config.proxy.dataPath) {
        telemetry.warn(`config reload: proxy.dataPath ${nextLoaded.config.proxy.dataPath} takes effect at the next start; the ${dataPath.kind} data path keeps serving`);
      }
      if (identity) {
        if (JSON.stringify(nextLoaded.config.identity) !== JSON.stringify(config.identity)) {
          telemetry.warn('config reload: changes to identity (CA, certificate lifetime) take effect at the next start');
        }
        await identity.update(nextLoaded.config).catch(async (e: unknown) => {
          await next.close(0);
          throw e;
        });
      }
      const old = state;
      state = next;
      watcher?.update([nextLoaded.path, ...nextResolved.wasmFiles]);
      telemetry.reloadResult(true);
      telemetry.info(`config reloaded (version ${next.version}): ${nextLoaded.config.services.length} services, ${next.chains.size} filter chains`, {
        filters: [...nextResolved.filters.values()].map((f) => ({ id: f.id, name: f.binding.name, sha256: f.binding.sha256 })),
      });
      void old;
      await proxy.swap(next);
      await capture?.update(nextLoaded.config);
      return { ok: true };
    } catch (e) {
      telemetry.reloadResult(false);
      telemetry.error(`config reload failed; the previous config keeps serving: ${errorMessage(e)}`);
      return { ok: false, error: e };
    }
  };
  const reloadDetailed = (): Promise<ReloadOutcome> => {
    reloading = reloading.then(reloadOnce, reloadOnce);
    return reloading;
  };
  const reload = async (): Promise<boolean> => (await reloadDetailed()).ok;
  if (options.watch !== false) {
    watcher = source.watch(loaded, resolved, reloadDetailed, telemetry);
  }
  source.started?.();

  return {
    telemetry, proxy, dataPath, admin, engine, identity, capture,
    get state() { return state; },
    reload,
    async close() {
      watcher?.close();
      await reloading.catch(() => undefined);
      source.close?.();
      await admin?.close();
      await capture?.close();
      await proxy.close(config.proxy.limits.drainTimeoutMs);
      identity?.close();
      await engine.close();
      await telemetry.flush();
      await telemetry.close();
    },
  };
}

function targetAddress(t: NonNullable<BuiltState['mesh']['outboundTarget']>): { address: string; port: number } {
  if (t.kind === 'address') return { address: t.address, port: t.port };
  if (t.kind === 'workload') return { address: t.workload.workload.address, port: t.port };
  // A service: its VIP when it has one, else its name (routed by name).
  return { address: t.service.vip ?? t.key, port: t.servicePort.port };
}
