/** Types and helpers the runtime takes from the SDK's host side, in one place. */
export * from '@ambit/filter-sdk/host';
export type { FailurePolicy } from './filters/engine.js';
