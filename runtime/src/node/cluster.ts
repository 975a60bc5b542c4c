/**
 * One node proxy process per core: `node:cluster` workers share the listeners (the
 * kernel spreads accepted connections), each with its own filter engine. The primary
 * validates the config, serves the admin API with every worker's metrics summed,
 * watches the files, and tells the workers to reload once a change has validated.
 */
import cluster, { type Worker } from 'node:cluster';
import path from 'node:path';
import { Registry } from 'prom-client';
import { clusterMetrics, clusterWorkerMetrics, startAdminServer } from '../admin/index.js';
import { loadMeshConfig, resolveFilters, watchMeshConfig, type LoadedMeshConfig, type ResolvedFilters } from '../config/index.js';
import { errorMessage } from '../deps.js';
import { createTelemetry } from '../telemetry/index.js';
import { runNode, type RunOptions } from './run.js';
import { startCapture } from '../capture/index.js';
import { openSharedDir, SHARED_DIR_ENV } from '../filters/shared-dir.js';
import { redactMeshConfig } from './redact.js';
import { chooseDataPath, expectedEngine } from './data-path.js';

/** How many workers the primary forked, for each of them (they all run the node data path: ./data-path.ts). */
const WORKERS_ENV = 'AMBIT_CLUSTER_WORKERS';

type ToWorker = { ambit: 'reload' } | { ambit: 'shutdown' };
type FromWorker = { ambit: 'ready' } | { ambit: 'reloaded'; ok: boolean } | { ambit: 'failed'; error: string };

function isAmbit(m: unknown): m is FromWorker | ToWorker {
  return typeof m === 'object' && m !== null && 'ambit' in m;
}

/** In a worker: run the proxy without admin or watcher, and follow the primary. */
export async function runClusterWorker(options: RunOptions): Promise<void> {
  const registry = new Registry();
  let node;
  try {
    node = await runNode({ ...options, admin: false, watch: false, registry, workers: Number(process.env[WORKERS_ENV]) || 2 });
  } catch (e) {
    process.send?.({ ambit: 'failed', error: errorMessage(e) } satisfies FromWorker);
    process.exit(1);
  }
  clusterWorkerMetrics(registry);
  process.on('message', (m: unknown) => {
    if (!isAmbit(m)) return;
    if (m.ambit === 'reload') void node.reload().then((ok) => process.send?.({ ambit: 'reloaded', ok } satisfies FromWorker));
    if (m.ambit === 'shutdown') void node.close().then(() => process.exit(0));
  });
  process.on('SIGTERM', () => { /* the primary coordinates shutdown */ });
  process.on('SIGINT', () => { /* likewise */ });
  process.send?.({ ambit: 'ready' } satisfies FromWorker);
}

/** In the primary: fork `workers` workers and coordinate them. Resolves when they have all stopped. */
/** Resolves with the reason when workers could not start. */
export async function runClusterPrimary(options: RunOptions & { workers: number }): Promise<string | undefined> {
  const telemetry = createTelemetry({ registry: new Registry(), accessLog: 'off', level: options.logLevel });
  let loaded: LoadedMeshConfig = await loadMeshConfig(options.config);
  let resolved: ResolvedFilters = await resolveFilters(loaded);
  for (const n of resolved.notes) telemetry.info(`filters: ${n}`);
  for (const w of loaded.warnings) telemetry.warn(`config: ${w.file}${w.line ? `:${w.line}` : ''}: ${w.pointer}: ${w.message}`);

  // What each worker runs (and logs): the node data path, as workers are not served by the native
  // one. A config with `identity` (mTLS, served by the native path only) stops here, saying so.
  const { kind, asked, reason } = chooseDataPath(loaded.config, { engine: expectedEngine(loaded.config), workers: options.workers });
  const workersDataPath = { kind, asked, ...(reason ? { reason } : {}) };

  cluster.schedulingPolicy = cluster.SCHED_NONE;
  const ready = new Set<Worker>();
  const crashes: number[] = [];
  let stopping = false;
  let failure: string | undefined;

  // One shared directory for the node: every worker maps the same tables (capability `shared`),
  // so a rate limit is the node's, not each worker's.
  const sharedDir = openSharedDir();
  const fork = () => {
    const w = cluster.fork({ [SHARED_DIR_ENV]: sharedDir.path, [WORKERS_ENV]: String(options.workers) });
    w.on('message', (m: unknown) => {
      if (!isAmbit(m)) return;
      if (m.ambit === 'ready') ready.add(w);
      if (m.ambit === 'failed') failure = m.error;
      if (m.ambit === 'reloaded' && !m.ok) telemetry.warn(`worker ${w.process.pid} could not apply the reload; it keeps its previous config`);
    });
    w.on('exit', (code, signal) => {
      ready.delete(w);
      if (stopping) return;
      const now = Date.now();
      crashes.push(now);
      while (crashes.length > 0 && crashes[0]! < now - 60_000) crashes.shift();
      if (failure) {
        telemetry.error(`worker failed to start: ${failure}; not restarting it`);
        return;
      }
      if (crashes.length > 5) {
        telemetry.error(`worker ${w.process.pid} exited (${signal ?? code}); more than 5 exits in a minute, not restarting`);
        return;
      }
      telemetry.warn(`worker ${w.process.pid} exited (${signal ?? code}); starting another`);
      fork();
    });
  };
  for (let i = 0; i < options.workers; i++) fork();

  // Capture is the primary's (one loader per node); the workers only serve.
  const capture = await startCapture(loaded.config, (level, message) => telemetry[level](message));
  const admin = await startAdminServer({
    address: loaded.config.proxy.admin.address,
    port: options.ports?.admin ?? loaded.config.proxy.admin.port,
    ready: () => (ready.size === options.workers ? { ready: true } : { ready: false, reason: `${ready.size} of ${options.workers} workers ready` }),
    configDump: () => ({
      file: loaded.path, workers: options.workers, dataPath: workersDataPath, sharedDir: sharedDir.path, config: redactMeshConfig(loaded.config, resolved), capture: capture.status(),
      filters: [...resolved.filters.values()].map((f) => ({ id: f.id, name: f.binding.name, location: f.location, sha256: f.binding.sha256, digest: f.artifact.digest })),
      identity: { mtls: 'off: the config sets no identity' },
    }),
    metrics: clusterMetrics(),
  });
  telemetry.info(`admin API on http://${admin.address().address}:${admin.address().port}/ (${options.workers} workers)`);

  const watcher = watchMeshConfig(loaded, resolved, () => {
    void (async () => {
      try {
        const l = await loadMeshConfig(options.config);
        const r = await resolveFilters(l);
        loaded = l;
        resolved = r;
        watcher.update([l.path, ...r.wasmFiles]);
        await capture.update(l.config);
        telemetry.info('config changed and validated; workers reloading');
        for (const w of Object.values(cluster.workers ?? {})) w?.send({ ambit: 'reload' } satisfies ToWorker);
      } catch (e) {
        telemetry.error(`config reload failed; the previous config keeps serving: ${errorMessage(e)}`);
      }
    })();
  });

  await new Promise<void>((resolve) => {
    const stop = () => {
      if (stopping) return;
      stopping = true;
      telemetry.info('shutting down: draining workers');
      watcher.close();
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
      if (workers.length === 0) resolve();
      let left = workers.length;
      for (const w of workers) {
        w.once('exit', () => { if (--left === 0) resolve(); });
        w.send({ ambit: 'shutdown' } satisfies ToWorker);
      }
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    cluster.on('exit', () => {
      if (!stopping && Object.keys(cluster.workers ?? {}).length === 0 && failure) stop();
    });
  });
  await admin.close();
  await capture.close();
  sharedDir.release();
  await telemetry.flush();
  return failure;
}
