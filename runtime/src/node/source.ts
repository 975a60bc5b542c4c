/**
 * Where a node proxy's config comes from: a YAML file it watches (the default), or the
 * controller's gRPC stream (`../controlplane/source.ts`). `runNode` loads, validates and
 * swaps configs the same way whichever it is.
 */
import { loadMeshConfig, watchMeshConfig, type LoadedMeshConfig, type ResolvedFilters } from '../config/index.js';
import type { CertificateIssuer } from '../identity/ca.js';
import type { Telemetry } from '../telemetry/types.js';

export type ReloadOutcome = { ok: true } | { ok: false; error: unknown };

export interface SourceWatch {
  /** The files the running config depends on (after a reload bound other filters). */
  update(files: readonly string[]): void;
  close(): void;
}

export interface ConfigSource {
  /** The current config, validated (throws MeshConfigError and the filter loader's errors). */
  load(): Promise<LoadedMeshConfig>;
  /** Calls `reload` whenever a new config may be there; `reload` resolves with its outcome. */
  watch(loaded: LoadedMeshConfig, resolved: ResolvedFilters, reload: () => Promise<ReloadOutcome>, telemetry: Telemetry): SourceWatch;
  /** Certificates signed elsewhere than by a CA in the config (`identity.ca.controller`). */
  readonly remoteIssuer?: { issuer: CertificateIssuer; source: string };
  /** The first config is serving. */
  started?(): void;
  close?(): void;
}

/** A YAML mesh config file, reloaded when it or a loaded filter component changes. */
export function fileSource(file: string): ConfigSource {
  return {
    load: () => loadMeshConfig(file),
    watch(loaded, resolved, reload, telemetry) {
      return watchMeshConfig(loaded, resolved, (changed) => {
        telemetry.info(`change seen in ${changed.join(', ')}; reloading`);
        void reload();
      }, { onError: (e: Error) => telemetry.warn(`watching config files: ${e.message}`) });
    },
  };
}
