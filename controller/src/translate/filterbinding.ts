/**
 * A FilterBinding's filters, checked the way a node proxy will check them: each package is
 * found in the controller's filter root (node_modules), its sha256 pin compared, and its
 * config validated against the package's own schema. Problems name the JSON path in the
 * resource (`/spec/filters/0/config/policies/1/action: must be one of: ALLOW, DENY, AUDIT`).
 */
import path from 'node:path';
import { MeshConfigError, resolveFilters, type BindingConfig, type ConfigIssue, type FilterRefConfig, type LoadedMeshConfig, type MeshConfig } from '@ambit/runtime';
import type { FilterBinding } from '../crd/schema.js';
import { errorMessage } from '../errors.js';

export interface FilterCheck {
  ok: boolean;
  /** `reason` for the Accepted condition: Valid, InvalidConfig, PackageNotFound, IntegrityMismatch. */
  reason: string;
  /** One line per problem, each starting with its JSON path. */
  problems: string[];
}

export function filterRefs(fb: FilterBinding): FilterRefConfig[] {
  return fb.spec.filters.map((f) => ({
    ref: f.package,
    ...(f.name ? { name: f.name } : {}),
    ...(f.sha256 ? { sha256: f.sha256 } : {}),
    ...(f.config !== undefined ? { config: f.config } : {}),
    failurePolicy: f.failurePolicy ?? 'fail-closed',
    deadlineMs: f.deadlineMs ?? 50,
    memoryMaxPages: f.memoryMaxPages ?? 1024,
    instances: f.instances ?? 'pooled',
    allowUnpinned: false,
    maxKeys: 4096,
  }));
}

/** `/bindings/0/filters/2/ref` → `/spec/filters/2/package`. */
function resourcePointer(pointer: string): string {
  return pointer.replace(/^\/bindings\/\d+\/filters\/(\d+)/, '/spec/filters/$1').replace(/^(\/spec\/filters\/\d+)\/ref$/, '$1/package');
}

export async function checkFilters(fb: FilterBinding, filterRoot: string): Promise<FilterCheck> {
  const file = `FilterBinding ${fb.metadata.namespace}/${fb.metadata.name}`;
  const binding: BindingConfig = { name: `${fb.metadata.namespace}/${fb.metadata.name}`, target: { all: true }, direction: fb.spec.direction, priority: 0, filters: filterRefs(fb) };
  const issue = (pointer: string, message: string): ConfigIssue => ({ file, pointer, message });
  const loaded: LoadedMeshConfig = {
    config: { bindings: [structuredClone(binding)] } as unknown as MeshConfig,
    file,
    path: path.join(filterRoot, 'filter-bindings'),
    warnings: [],
    issue,
  };
  try {
    await resolveFilters(loaded);
    return { ok: true, reason: 'Valid', problems: [] };
  } catch (e) {
    if (e instanceof MeshConfigError) {
      const problems = e.issues.map((i) => `${resourcePointer(i.pointer)}: ${i.message}`);
      const notFound = e.issues.some((i) => /\/ref$/.test(i.pointer));
      return { ok: false, reason: notFound ? 'PackageNotFound' : 'InvalidConfig', problems };
    }
    const code = (e as { code?: unknown }).code;
    const message = errorMessage(e).replace(/\/bindings\/\d+\/filters\/\d+[^\s:]*/g, (p) => resourcePointer(p));
    return { ok: false, reason: code === 'AMBIT_ERR_INTEGRITY' ? 'IntegrityMismatch' : 'InvalidConfig', problems: [message] };
  }
}
