/**
 * The filter API shared by both entry points: `index.ts` (with TypeBox's real `Type`,
 * for type-checking and reading the schema at build time) and `guest-index.ts` (what
 * the component bundles).
 */
export { defineFilter, respond, deny, retry } from './guest/define.js';
export { log, counter, clock, random, shared, traffic, type SharedValue } from './guest/host.js';
export { HeaderMap } from './guest/headers.js';
export type {
  FilterDefinition,
  FilterContext,
  Peer,
  TlsInfo,
  ConnectionInfo,
  HttpRequest,
  HttpResponse,
  ReadonlyRequest,
  Respond,
  Deny,
  Retry,
  ConnectionVerdict,
  RequestVerdict,
  ResponseVerdict,
  ResponseContext,
} from './guest/public-types.js';
export type { Capability, Direction } from './abi/types.js';
