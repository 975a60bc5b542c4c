export * from './filters/engine.js';
export { runPhase, phaseOrder, failureResponse, FilterCallError, type ChainMember } from './filters/chain.js';
export { V8Engine, defaultV8Workers, type V8EngineOptions } from './filters/v8/engine.js';
export { bindingFromArtifact } from './filters/binding.js';
export { NodeProxy, type ListenerSpec, type NodeProxyOptions, type OriginalDstReader } from './proxy/proxy.js';
export { DEFAULT_LIMITS, type ProxyState, type ProxyLimits, type Route, type WorkloadInfo, type PortProtocol } from './proxy/state.js';
export { Balancer, type BalancerPolicy } from './upstream/balancer.js';
export { Endpoint, DEFAULT_OUTLIER, type OutlierPolicy } from './upstream/endpoint.js';
export type { Telemetry, RequestRecord, ConnectionRecord, PeerRecord } from './telemetry/types.js';
