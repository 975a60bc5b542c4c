/**
 * How a node proxy reaches the controller: TLS verified against the controller's roots
 * (the `ambit-ca-root` ConfigMap), or plaintext when none are given (tests), with the
 * node proxy's ServiceAccount token as a bearer token on every call. The token file is
 * read on each call: kubelet rotates projected tokens in place.
 */
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../deps.js';
import { ControlPlaneError } from './errors.js';
import { AUTHORIZATION } from './proto.js';

export const DEFAULT_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const DEFAULT_CONTROLLER_SERVER_NAME = 'ambit-controller.ambit-system.svc';

export interface ControllerConnection {
  /** `host:port`. */
  address: string;
  /** PEM roots to verify the controller's certificate; absent: plaintext. */
  caFile?: string;
  /** Name expected in the controller's certificate. Default ambit-controller.ambit-system.svc. */
  serverName?: string;
  /** The ServiceAccount token file. Default: the pod's. */
  tokenFile?: string;
}

export async function readToken(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (e) {
    throw new ControlPlaneError('AMBIT_ERR_CONTROLLER_TOKEN', `cannot read the ServiceAccount token ${file}: ${errorMessage(e)}; mount the node proxy's token there or pass --token-file`, { cause: e });
  }
}

/** Channel credentials plus options for a client of the controller. */
export async function controllerChannel(c: ControllerConnection): Promise<{ credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions }> {
  const tokenFile = c.tokenFile ?? DEFAULT_TOKEN_FILE;
  const callCreds = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    readToken(tokenFile).then((token) => {
      const md = new grpc.Metadata();
      md.set(AUTHORIZATION, `Bearer ${token}`);
      callback(null, md);
    }, (e: unknown) => callback(e as Error));
  });
  if (!c.caFile) {
    // grpc-js refuses call credentials on an insecure channel; add the token per call instead.
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  }
  let roots: Buffer;
  try {
    roots = await readFile(c.caFile);
  } catch (e) {
    throw new ControlPlaneError('AMBIT_ERR_CONTROLLER_CA', `cannot read the controller's roots ${c.caFile}: ${errorMessage(e)}`, { cause: e });
  }
  return {
    credentials: grpc.credentials.combineChannelCredentials(grpc.credentials.createSsl(roots), callCreds),
    options: { 'grpc.ssl_target_name_override': c.serverName ?? DEFAULT_CONTROLLER_SERVER_NAME, 'grpc.default_authority': c.serverName ?? DEFAULT_CONTROLLER_SERVER_NAME },
  };
}

/** Metadata carrying the token, for plaintext channels (TLS channels add it themselves). */
export async function tokenMetadata(c: ControllerConnection): Promise<grpc.Metadata> {
  const md = new grpc.Metadata();
  if (!c.caFile) md.set(AUTHORIZATION, `Bearer ${await readToken(c.tokenFile ?? DEFAULT_TOKEN_FILE)}`);
  return md;
}
