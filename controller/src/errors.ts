/** Errors of the controller, with stable searchable codes. */
export type ControllerErrorCode =
  /** The API server cannot be reached or refused a call; the message says which and why. */
  | 'AMBIT_ERR_KUBE_API'
  /** The CA Secret exists but cannot be used (missing keys, a key that does not match). */
  | 'AMBIT_ERR_CA_SECRET'
  /** A node proxy's token was refused (TokenReview), is not the node ServiceAccount's, or is not bound to a pod. */
  | 'AMBIT_ERR_NODE_AUTH'
  /** A certificate request asks for an identity no pod on the caller's node has. */
  | 'AMBIT_ERR_CSR_DENIED'
  /** A command-line flag is invalid. */
  | 'AMBIT_ERR_CONTROLLER_FLAGS';

export class ControllerError extends Error {
  readonly code: ControllerErrorCode;
  constructor(code: ControllerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControllerError';
    this.code = code;
  }
}

export function errorMessage(e: unknown): string {
  if (e && typeof e === 'object' && 'body' in e) {
    const body = (e as { body?: unknown }).body;
    if (typeof body === 'string') {
      try {
        const status = JSON.parse(body) as { message?: string };
        if (status.message) return status.message;
      } catch {
        return body;
      }
    }
  }
  return e instanceof Error ? e.message : String(e);
}

/** The HTTP status of a failed API call, when it has one. */
export function statusCode(e: unknown): number | undefined {
  const c = (e as { code?: unknown; statusCode?: unknown } | null)?.code ?? (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof c === 'number' ? c : undefined;
}
