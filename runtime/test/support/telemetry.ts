/** A Telemetry sink that keeps what the proxy reported, for assertions. */
import type { ConnectionRecord, FilterFailure, RequestRecord, Telemetry } from '@ambit/runtime';

export interface RecordingTelemetry extends Telemetry {
  requests: RequestRecord[];
  connections: ConnectionRecord[];
  messages: Array<{ level: string; msg: string; fields?: Record<string, unknown> }>;
  filterLogs: Array<{ filter: string; level: string; message: string }>;
  /** Filter failures, as the telemetry would log them. */
  failures: FilterFailure[];
}

export function recordingTelemetry(): RecordingTelemetry {
  const t: RecordingTelemetry = {
    requests: [], connections: [], messages: [], filterLogs: [], failures: [],
    logsRequests: true,
    request: (r) => { t.requests.push(r); },
    requestCell: () => {},
    filterCell: () => {},
    connection: (r) => { t.connections.push(r); },
    filterPhase: (_phase, out) => { t.failures.push(...out.failures); },
    filterCounter: () => {},
    filterLog: (filter, level, message) => { t.filterLogs.push({ filter, level, message }); },
    info: (msg, fields) => { t.messages.push({ level: 'info', msg, fields }); },
    warn: (msg, fields) => { t.messages.push({ level: 'warn', msg, fields }); },
    error: (msg, fields) => { t.messages.push({ level: 'error', msg, fields }); },
  };
  return t;
}

/** Waits until `check` holds (bounded), for records written after a response ends. */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
