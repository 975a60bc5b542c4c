/** `@ambit/runtime/dev`: the one-node local mesh `ambit-filter dev` runs a filter in. */
export { startDevMesh, type DevMesh, type DevMeshOptions } from './dev-mesh.js';
