/**
 * Metrics across `node:cluster` workers, with prom-client's `AggregatorRegistry`.
 *
 * Each worker keeps its metrics on its own registry; the primary, which runs the admin
 * server, asks every worker over the cluster IPC channel and serves the aggregate:
 * counters and histograms summed, gauges as each metric says (`aggregator`: the reload
 * timestamp takes the latest, the reload count the largest).
 *
 * ```ts
 * // primary                                   // each worker
 * await startAdminServer({                     const registry = new Registry();
 *   …, metrics: clusterMetrics(),              const telemetry = createTelemetry({ registry });
 * });                                          clusterWorkerMetrics(registry);
 * ```
 *
 * Only the workers' registries are aggregated: metrics kept in the primary itself are
 * not part of the answer.
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { MetricsText } from './server.js';

/**
 * In the primary: a metrics provider for `startAdminServer` that aggregates every
 * connected worker's registries. It rejects (the admin server answers 500) when a
 * worker does not answer within prom-client's 5 s.
 */
export function clusterMetrics(): () => Promise<MetricsText> {
  if (!cluster.isPrimary) throw new Error('clusterMetrics() belongs in the cluster primary');
  // The constructor installs the primary's listener for workers' answers.
  const aggregator = new AggregatorRegistry();
  return async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() });
}

/**
 * In each worker: answer the primary's metric requests with these registries (instead
 * of prom-client's global one). Call once per worker, after creating the metrics.
 */
export function clusterWorkerMetrics(registries: Registry | Registry[]): void {
  if (!cluster.isWorker) throw new Error('clusterWorkerMetrics() belongs in a cluster worker');
  AggregatorRegistry.setRegistries(Array.isArray(registries) ? registries : [registries]);
  // The constructor installs the worker's listener for the primary's requests (once).
  new AggregatorRegistry();
}
