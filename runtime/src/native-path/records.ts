/**
 * The native data path's reports, taken in batches. The native side counts the request
 * and filter metrics itself (cells per label set, histograms on the bounds Node gave it),
 * and Node adds them to the same Prometheus series the Node data path writes. Records come
 * only where they are needed: a request record for the access log (when it is on), a
 * connection record for each connection, a phase record for filter failures and log lines.
 */
import type { LogLevel } from '../deps.js';
import type { FilterFailure } from '../filters/engine.js';
import type { ConnectionRecord, FilterCell, RequestCell, RequestRecord, Telemetry } from '../telemetry/types.js';

type PhaseName = 'connection' | 'requestHeaders' | 'responseHeaders';

type NativeRecord =
  | { type: 'request'; r: RequestRecord }
  | { type: 'connection'; r: ConnectionRecord }
  | { type: 'phase'; phase: PhaseName; r: { failures: FilterFailure[] | null; logs: Array<[string, LogLevel, string]> } };

interface Batch {
  dropped: number;
  records: NativeRecord[];
  requests?: RequestCell[];
  filters?: FilterCell[];
  /** [filter, name, delta] */
  counters?: Array<[string, string, number]>;
}

/**
 * Hands one batch (`NativeProxy.takeRecords()`) to telemetry; answers how many records it held.
 * `mapFailure` maps a filter failure's message to the filter's TypeScript source (as the Node
 * data path's chains do).
 */
export function deliverRecords(batch: string, telemetry: Telemetry, mapFailure: (f: FilterFailure) => FilterFailure = (f) => f): number {
  const { dropped, records, requests = [], filters = [], counters = [] } = JSON.parse(batch) as Batch;
  if (dropped > 0) telemetry.warn(`native data path: ${dropped} access records dropped (the batch buffer was full)`);
  for (const rec of records) {
    if (rec.type === 'request') telemetry.request(rec.r);
    else if (rec.type === 'connection') {
      telemetry.connection(rec.r);
      // HBONE refusals are operational: the peer node's operator needs the reason.
      if (rec.r.denied?.filter === 'hbone') telemetry.warn(`hbone: refused connection from ${rec.r.source.address} to ${rec.r.destination.address}:${rec.r.destination.port}: ${rec.r.denied.reason}`);
    }
    else {
      const { failures, logs } = rec.r;
      // The calls are counted in the filter cells; the failures are logged and counted here.
      telemetry.filterPhase(rec.phase, { action: 'continue', ops: [], calls: [], failures: (failures ?? []).map(mapFailure) });
      for (const [f, level, message] of logs) telemetry.filterLog(f, level, message);
    }
  }
  for (const c of requests) telemetry.requestCell(c);
  for (const c of filters) telemetry.filterCell(c);
  for (const [f, name, delta] of counters) telemetry.filterCounter(f, name, delta);
  return records.length + requests.length + filters.length + counters.length;
}
