/**
 * Errors of the node proxy's link to the controller, with stable searchable codes.
 */
export type ControlPlaneErrorCode =
  /** The ServiceAccount token file cannot be read: mount it, or pass --token-file. */
  | 'AMBIT_ERR_CONTROLLER_TOKEN'
  /** The controller's roots (--controller-ca) cannot be read. */
  | 'AMBIT_ERR_CONTROLLER_CA'
  /** The controller sent something the proxy cannot read (a resource that is not JSON, a missing mesh resource). */
  | 'AMBIT_ERR_CONTROLLER_PROTOCOL'
  /** The command line asks for something the controller mode does not do. */
  | 'AMBIT_ERR_CONTROLLER_USAGE';

export class ControlPlaneError extends Error {
  readonly code: ControlPlaneErrorCode;
  constructor(code: ControlPlaneErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ControlPlaneError';
    this.code = code;
  }
}
