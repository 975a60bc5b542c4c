/**
 * `@ambit/filter-sdk`: write Ambit filters in TypeScript.
 *
 * A filter module default-exports {@link defineFilter}(...). `ambit-filter build`
 * bundles it and turns it into a WebAssembly component of the `ambit:filter` world.
 * This entry point is what runs inside the component: it uses no Node.js APIs.
 */
export { defineFilter, respond, deny, retry } from './guest/define.js';
export { log, counter, clock } from './guest/host.js';
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
} from './guest/public-types.js';
export type { Capability, Direction } from './abi/types.js';
export { Type } from '@sinclair/typebox';
export type { Static, TSchema } from '@sinclair/typebox';
