/** What the bench takes from the runtime and the SDK's host side, in one place. */
export * from '../deps.js';
export { BINDING_DEFAULTS, type FilterBinding, type FilterChain, type PhaseInput, type PhaseOutcome } from '../filters/engine.js';
export { runPhase, type CallFilter, type ChainMember } from '../filters/chain.js';
export { WasmtimeEngine, type PhaseBench, type SampleSummary, type InstanceProbe } from '../filters/wasmtime/engine.js';
export { loadNative } from '../filters/wasmtime/native.js';
