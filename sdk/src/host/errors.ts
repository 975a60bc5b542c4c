/**
 * Errors with a stable code a user can search for, like `FST_ERR_*` in Fastify.
 * Every message says what happened and what to do.
 */
export type AmbitErrorCode =
  | 'AMBIT_ERR_NOT_WASM'
  | 'AMBIT_ERR_NOT_COMPONENT'
  | 'AMBIT_ERR_WRONG_WORLD'
  | 'AMBIT_ERR_FILTER_PACKAGE'
  | 'AMBIT_ERR_INTEGRITY'
  | 'AMBIT_ERR_CONFIG_INVALID'
  | 'AMBIT_ERR_CONFIG_REJECTED'
  | 'AMBIT_ERR_MEMORY_CAP'
  | 'AMBIT_ERR_INSTANTIATE'
  | 'AMBIT_ERR_CAPABILITY'
  | 'AMBIT_ERR_BUILD'
  | 'AMBIT_ERR_ENGINE_CLOSED'
  /** The filter engine the config asks for cannot run here (e.g. the wasmtime addon is not built). */
  | 'AMBIT_ERR_ENGINE_UNAVAILABLE'
  /** A filter called a host function wrongly (wrong phase, oversized key or value): the call traps. */
  | 'AMBIT_ERR_HOST_CALL'
  /**
   * A filter's output is not valid HTTP or is too large (a header name or value, a status, a local
   * response, a head changed in a phase where it is read-only): the call fails, per the binding's
   * failure policy.
   */
  | 'AMBIT_ERR_FILTER_OUTPUT'
  /** The node's shared table of a binding (capability `shared`) cannot be opened: the message names the file and what to do. */
  | 'AMBIT_ERR_SHARED_TABLE'
  /** A new key found a filter's shared table full (its binding's `maxKeys`): nothing was stored. */
  | 'AMBIT_ERR_SHARED_FULL'
  /** One filter call went over a per-call cap (log lines, counter updates, bytes returned): that call fails. */
  | 'AMBIT_ERR_CALL_LIMIT'
  /** Traffic capture (eBPF or nftables) could not be installed, updated or removed; the message says which step and what to do. */
  | 'AMBIT_ERR_CAPTURE'
  /** The node proxy's mesh config (mesh.yaml) is unreadable or invalid; the message names file, JSON path and line. */
  | 'AMBIT_ERR_MESH_CONFIG';

export class AmbitError extends Error {
  readonly code: AmbitErrorCode;
  constructor(code: AmbitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AmbitError';
    this.code = code;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
