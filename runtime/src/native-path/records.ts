/**
 * The native data path's reports, taken in batches: each request and connection record goes
 * to the access log and the Prometheus metrics exactly as the Node data path's do (same
 * names, same format); each filter phase to the `ambit_filter_*` metrics, with the filters'
 * log lines and counters.
 */
import type { LogLevel } from '../deps.js';
import type { FilterCall, FilterFailure } from '../filters/engine.js';
import type { ConnectionRecord, RequestRecord, Telemetry } from '../telemetry/types.js';

type PhaseName = 'connection' | 'requestHeaders' | 'responseHeaders';

type NativeRecord =
  | { type: 'request'; r: RequestRecord }
  | { type: 'connection'; r: ConnectionRecord }
  | { type: 'phase'; phase: PhaseName; r: { calls: FilterCall[] | null; failures: FilterFailure[] | null; logs: Array<[string, LogLevel, string]>; counters: Array<[string, string, number]> } };

/** Hands one batch (`NativeProxy.takeRecords()`) to telemetry; answers how many records it held. */
export function deliverRecords(batch: string, telemetry: Telemetry): number {
  const { dropped, records } = JSON.parse(batch) as { dropped: number; records: NativeRecord[] };
  if (dropped > 0) telemetry.warn(`native data path: ${dropped} access records dropped (the batch buffer was full)`);
  for (const rec of records) {
    if (rec.type === 'request') telemetry.request(rec.r);
    else if (rec.type === 'connection') telemetry.connection(rec.r);
    else {
      const { calls, failures, logs, counters } = rec.r;
      telemetry.filterPhase(rec.phase, { action: 'continue', ops: [], calls: calls ?? [], failures: failures ?? [] });
      for (const [f, level, message] of logs) telemetry.filterLog(f, level, message);
      for (const [f, name, delta] of counters) telemetry.filterCounter(f, name, delta);
    }
  }
  return records.length;
}
