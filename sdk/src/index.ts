/**
 * `@ambit/filter-sdk`: write Ambit filters in TypeScript.
 *
 * A filter module default-exports {@link defineFilter}(...). `ambit-filter build`
 * bundles it and turns it into a WebAssembly component of the `ambit:filter` world.
 * This entry point is what runs inside the component: it uses no Node.js APIs.
 */
export * from './api.js';
export { Type } from '@sinclair/typebox';
export type { Static, TSchema } from '@sinclair/typebox';
