/**
 * `@ambit/filter-sdk/host`: what a host (the Ambit node proxy, the test harness, a
 * third engine) needs to load and call filter components on V8.
 */
export * from '../abi/types.js';
export { applyHeaderOps, applyHeaderOp, applyRequestOps, applyResponseOps } from '../abi/ops.js';
export { AmbitError, errorMessage, type AmbitErrorCode } from './errors.js';
export { capMemory, PAGE_BYTES } from './memory.js';
export {
  prepareComponent, compileCore, loadGlue, instantiateHandler, bindingOf, type V8Binding, checkComponentBinary, sha256Hex, defaultCacheDir,
  type PreparedComponent, type CoreModules,
} from './component.js';
export { bindComponent } from './bind.js';
export { directShape, instantiateDirect, type DirectShape } from './direct.js';
export { HostContext, HostRequestHead, HostResponseHead, TYPES_IMPORT } from './resources.js';
export {
  OUTPUT_LIMITS, checkHeaderName, checkHeaderValue, checkMethod, checkPath, checkAuthority, checkStatus, checkLocalResponse,
  checkConnectionAction, checkRetry,
} from './output.js';
export { createHostImports, newCallScope, MAX_LOG_LINE, MAX_REQUEST_DELAY_MS, type HostSink, type HostExtras, type CallScope } from './imports.js';
export { SharedTable, type SharedStore, DEFAULT_SHARED_ENTRIES, MAX_SHARED_KEY_BYTES, MAX_SHARED_VALUE_BYTES } from './shared.js';
export { validateConfig, formatSchemaErrors } from './config.js';
export { CALL_LIMITS, checkResultSize, freshBudget, type CallBudget } from './call-limits.js';
export { filterDigest, canonicalJson, DIGEST_VERSION } from './digest.js';
export { loadFilterArtifact, checkCapabilities, type FilterArtifact, type FilterManifest, type PackageField } from './package.js';
export { readSourceMap, mapFilterStack, SOURCE_MAP_SECTION, BUNDLE_NAME } from './source-map.js';
