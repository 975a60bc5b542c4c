/**
 * The controller ↔ node proxy protocol (`runtime/proto/ambit/controller/v1/controller.proto`),
 * loaded with @grpc/proto-loader, and its messages as TypeScript types (fields in camelCase,
 * int64 as number, bytes as Buffer).
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The .proto file, for other implementations and for the controller. */
export const CONTROLLER_PROTO = fileURLToPath(new URL('../../proto/ambit/controller/v1/controller.proto', import.meta.url));

export interface ErrorDetail {
  code: string;
  message: string;
  issues: ResourceIssue[];
}

export interface ResourceIssue {
  /** `type/name`. */
  resource: string;
  pointer: string;
  message: string;
}

export interface ConfigRequest {
  node: string;
  responseNonce: string;
  errorDetail?: ErrorDetail | null;
  appliedVersion: string;
  initialResourceVersions: Record<string, string>;
}

export interface WireResource {
  type: string;
  name: string;
  version: string;
  body: Buffer;
}

export interface ResourceKey {
  type: string;
  name: string;
}

export interface ConfigResponse {
  systemVersion: string;
  nonce: string;
  resources: WireResource[];
  removed: ResourceKey[];
}

export interface CertificateRequest {
  csr: string;
  ttlMs: number;
}

export interface CertificateResponse {
  certChain: string;
  roots: string;
}

export interface ControllerProto {
  MeshConfig: grpc.ServiceClientConstructor;
  Certificates: grpc.ServiceClientConstructor;
}

let cached: ControllerProto | undefined;

/** The two services' definitions (for a server) and client constructors. */
export function controllerProto(): ControllerProto {
  if (cached) return cached;
  const def = protoLoader.loadSync(CONTROLLER_PROTO, { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { ambit: { controller: { v1: ControllerProto } } };
  cached = pkg.ambit.controller.v1;
  return cached;
}

/** The metadata key of the node proxy's ServiceAccount token. */
export const AUTHORIZATION = 'authorization';
