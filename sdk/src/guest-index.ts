/**
 * What `@ambit/filter-sdk` is inside a component. The same API as `index.ts`, except
 * `Type`: a component never reads its config schema (the host validates configs
 * against `dist/schema.json`, taken from the real TypeBox schema at build time), so the
 * bundle carries a stand-in instead of TypeBox — about 1 MiB less per instance.
 */
export * from './api.js';
export { Type } from './guest/type-stub.js';
