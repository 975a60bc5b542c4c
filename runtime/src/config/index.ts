/** The node proxy's mesh config: schema and types, loading and checking, filter resolution, watching. */
export * from './schema.js';
export {
  loadMeshConfig, parseMeshConfig, validateMeshConfig, meshConfigJsonSchema, formatIssue, MeshConfigError,
  type ConfigIssue, type LoadedMeshConfig,
} from './load.js';
export { resolveFilters, chainBindings, type ResolvedFilter, type ResolvedFilters } from './filters.js';
export { parseFilterRef, type FilterRef } from './ref.js';
export { watchFiles, watchMeshConfig, type ConfigWatcher, type WatchOptions } from './watch.js';
