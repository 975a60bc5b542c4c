/**
 * Per-call caps: what one filter call may make the host hold. A filter that logs, counts or
 * answers without bound would grow the node proxy's memory with every request; past a cap the
 * call fails (AMBIT_ERR_CALL_LIMIT, a trap), and the binding's failure policy decides what the
 * request gets, as for any other trap. The wasmtime engine applies the same numbers
 * (`runtime/native/src/limits.rs`).
 */
import { AmbitError } from './errors.js';

export const CALL_LIMITS = {
  /** Log lines one call may write. */
  logLines: 256,
  /** Counter updates one call may make. */
  counterUpdates: 1024,
  /** Bytes of what one call returns: header operations, a local response (status, headers, body), a reason. */
  resultBytes: 1 << 20,
} as const;

/** What the current call has spent; reset before every filter call. */
export interface CallBudget {
  logLines: number;
  counterUpdates: number;
}

export function freshBudget(): CallBudget {
  return { logLines: 0, counterUpdates: 0 };
}

/** Counts one more log line or counter update; throws AMBIT_ERR_CALL_LIMIT past the cap. */
export function spend(budget: CallBudget, what: 'logLines' | 'counterUpdates', filter: string): void {
  if (++budget[what] <= CALL_LIMITS[what]) return;
  const noun = what === 'logLines' ? 'log lines' : 'counter updates';
  throw new AmbitError('AMBIT_ERR_CALL_LIMIT', `filter ${filter} made more than ${CALL_LIMITS[what]} ${noun} in one call; the call fails (its binding's failure policy applies)`);
}

/** UTF-16 length as a byte estimate (exact for ASCII; never under by more than 3x). */
function size(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + size(v), 0);
  if (value !== null && typeof value === 'object') return Object.values(value).reduce((n: number, v) => n + size(v), 0);
  return 8;
}

/** Throws AMBIT_ERR_CALL_LIMIT when what a call returned is over CALL_LIMITS.resultBytes. */
export function checkResultSize(filter: string, result: unknown): void {
  const n = size(result);
  if (n > CALL_LIMITS.resultBytes) {
    throw new AmbitError('AMBIT_ERR_CALL_LIMIT', `filter ${filter} returned ${n} bytes from one call (header changes or a local response), over ${CALL_LIMITS.resultBytes}; the call fails (its binding's failure policy applies)`);
  }
}
