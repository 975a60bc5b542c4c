/** The Ambit controller: the Kubernetes control plane of the mesh. */
export { startController, DEFAULTS, type ControllerOptions, type RunningController } from './controller.js';
export { main } from './cli.js';
export { crds, filterBindingCrd, structural } from './crd/crd.js';
export * from './crd/schema.js';
export { MeshModel, AUTHZ_PACKAGE, TRAFFIC_SPLIT_PACKAGE, type MeshSettings, type BindingOrigin } from './model/mesh.js';
export { ResourceTable, resource, type Resource, type ResourceType } from './model/table.js';
export { mapAuthorizationPolicy, type AuthorizationPolicy, type MappedPolicy } from './translate/authz.js';
export { composeRoutes, mapHttpRoute, type HttpRoute, type MappedRoute, type RouteEntry, type RouteMatch } from './translate/httproute.js';
export { MESH_LABEL, REACHES_ANNOTATION, HBONE_ADDRESS_ANNOTATION, HBONE_PORT_ANNOTATION } from './translate/labels.js';
export { Distributor } from './distribution/server.js';
export { kubeClients, type KubeClients } from './kube/client.js';
export { ControllerError, type ControllerErrorCode } from './errors.js';
