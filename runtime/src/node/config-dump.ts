/**
 * `/config_dump`: the effective configuration (defaults filled in), each filter with
 * the sha256 of the component actually loaded and its filter digest (what a pin names), the chains built from them, and the
 * listeners, and (with mTLS) the CA and every certificate: SPIFFE ID, fingerprint,
 * serial and expiry. No component bytes, no keys, no filter secrets (./redact.ts).
 */
import type { CaptureStatus } from '../capture/index.js';
import type { FilterEngine } from '../filters/engine.js';
import type { NodeProxy } from '../proxy/proxy.js';
import type { NativeDataPath } from '../native-path/index.js';
import type { BuiltState } from './state.js';
import type { NodeIdentity } from './identity.js';
import type { DataPathDecision } from './data-path.js';
import { redactMeshConfig } from './redact.js';

export function configDump(
  state: BuiltState, engine: FilterEngine, proxy: NodeProxy | NativeDataPath, dataPath: DataPathDecision, originalDstUnavailable: string | undefined,
  identity?: NodeIdentity, capture?: CaptureStatus,
): unknown {
  return {
    version: state.version,
    file: state.loaded.path,
    engine: engine.kind,
    engineInfo: engine.info(),
    capture: {
      ...(originalDstUnavailable
        ? { originalDestination: 'listener target only', reason: originalDstUnavailable }
        : { originalDestination: 'SO_ORIGINAL_DST when the socket has one, else the listener target' }),
      ...(capture ?? {}),
    },
    listeners: proxy.addresses(),
    // Which data path serves, what was asked for (`dataPath: auto`) and, when auto stepped down to node, why.
    dataPath: { kind: dataPath.kind, asked: dataPath.asked, ...(dataPath.reason ? { reason: dataPath.reason } : {}), ...('info' in proxy ? proxy.info() : {}) },
    // Secrets in filter configs (schema-marked, or named like credentials) are <redacted>.
    config: redactMeshConfig(state.loaded.config, state.resolved),
    filters: [...state.resolved.filters.values()].map((f) => ({
      id: f.id,
      name: f.binding.name,
      ref: f.artifact.origin,
      location: f.location,
      sha256: f.binding.sha256,
      digest: f.artifact.digest,
      package: f.artifact.manifest ? `${f.artifact.manifest.package}@${f.artifact.manifest.version}` : undefined,
      capabilities: f.binding.capabilities,
      failurePolicy: f.binding.failurePolicy,
      deadlineMs: f.binding.deadlineMs,
      memoryMaxPages: f.binding.memoryMaxPages,
      instances: f.binding.instances,
    })),
    chains: [...state.chains.entries()].map(([plan, chain]) => ({ plan, filters: chain.filters })),
    stats: Object.fromEntries(engine.stats()),
    // Certificates by fingerprint, SPIFFE ID and expiry; the store never hands out keys here.
    identity: identity ? { ...identity.describe(), hbone: 'tunnels' in proxy ? proxy.tunnels?.stats() : undefined } : { mtls: 'off: the config sets no identity' },
  };
}
