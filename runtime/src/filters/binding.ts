import { validateConfig, type FilterArtifact } from '../deps.js';
import type { FailurePolicy, FilterBinding, InstanceStrategy } from './engine.js';

/**
 * Turns a loaded filter package plus a binding's settings into what an engine takes,
 * validating the config against the package's schema (AMBIT_ERR_CONFIG_INVALID names
 * the JSON path).
 */
export function bindingFromArtifact(
  artifact: FilterArtifact,
  settings: { config?: unknown; failurePolicy?: FailurePolicy; deadlineMs?: number; memoryMaxPages?: number; instances?: InstanceStrategy; name?: string; exposeErrors?: boolean } = {},
): FilterBinding {
  const name = settings.name ?? artifact.name;
  return {
    name,
    wasm: artifact.wasm,
    sha256: artifact.sha256,
    capabilities: artifact.capabilities,
    config: validateConfig(artifact.schema, settings.config, name),
    failurePolicy: settings.failurePolicy,
    deadlineMs: settings.deadlineMs,
    memoryMaxPages: settings.memoryMaxPages,
    instances: settings.instances,
    ...(settings.exposeErrors ? { exposeErrors: true } : {}),
  };
}
