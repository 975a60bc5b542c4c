/** The node proxy's link to the Ambit controller: the config stream, certificates by CSR, the protocol. */
export { ControllerSource, type ControllerSourceOptions } from './source.js';
export { ConfigStream, DEFAULT_BACKOFF, type ConfigStreamOptions, type PendingConfig } from './stream.js';
export { ControllerIssuer } from './issuer.js';
export { ResourceSet, RESOURCE_LISTS, MESH_RESOURCE, type MeshResourceBody, type ListResourceType } from './resources.js';
export { controllerProto, CONTROLLER_PROTO, AUTHORIZATION, type ConfigRequest, type ConfigResponse, type ErrorDetail, type ResourceIssue, type WireResource, type ResourceKey, type CertificateRequest, type CertificateResponse } from './proto.js';
export { DEFAULT_TOKEN_FILE, DEFAULT_CONTROLLER_SERVER_NAME, readToken, type ControllerConnection } from './credentials.js';
export { ControlPlaneError, type ControlPlaneErrorCode } from './errors.js';
