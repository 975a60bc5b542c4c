export * from './filters/engine.js';
export { runPhase, phaseOrder, failureResponse, FilterCallError, type ChainMember } from './filters/chain.js';
export { V8Engine, defaultV8Workers, type V8EngineOptions } from './filters/v8/engine.js';
export { bindingFromArtifact } from './filters/binding.js';
