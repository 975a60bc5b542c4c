/**
 * Loads the filters a mesh config binds: each `ref` → a filter package on disk → a
 * loaded, integrity-checked artifact → an engine `FilterBinding` with its config
 * validated against the filter's schema. Errors name the config file, line and the
 * JSON path of the binding's filter:
 *
 *     mesh.yaml:31:17: /bindings/0/filters/0/config/header: must match pattern "^[a-z0-9-]+$" (filter hello: see its schema)
 */
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import semver from 'semver';
import { AmbitError, errorMessage, loadFilterArtifact, type FilterArtifact } from '../deps.js';
import { bindingFromArtifact } from '../filters/binding.js';
import type { FilterBinding } from '../filters/engine.js';
import { formatIssue, MeshConfigError, type ConfigIssue, type LoadedMeshConfig } from './load.js';
import { parseFilterRef } from './ref.js';
import { RegistrySource } from './registry/source.js';
import type { FilterRefConfig } from './schema.js';

/** One filter entry of a binding, ready for an engine. */
export interface ResolvedFilter {
  /** JSON pointer of the entry: `/bindings/<i>/filters/<j>` — the id `MeshIndex` plans use. */
  id: string;
  binding: FilterBinding;
  artifact: FilterArtifact;
  /** Where the ref led: the package folder or .wasm file. */
  location: string;
}

export interface ResolvedFilters {
  /** By id (`/bindings/<i>/filters/<j>`). */
  filters: Map<string, ResolvedFilter>;
  /** The component files loaded (absolute), to watch for replacement. */
  wasmFiles: string[];
  /** What resolving through `filterSource` did, one line each (which version, from the lock or the registry; the lock written). */
  notes: string[];
}

/**
 * Resolves and loads every filter the config binds (each distinct ref + pin once).
 * Throws MeshConfigError (AMBIT_ERR_MESH_CONFIG) for refs that lead nowhere, versions
 * outside the range and invalid configs; AmbitError AMBIT_ERR_INTEGRITY (message
 * prefixed with file and JSON path) when a sha256 pin or a manifest does not match.
 */
export async function resolveFilters(loaded: LoadedMeshConfig): Promise<ResolvedFilters> {
  const dir = path.dirname(loaded.path);
  const notes: string[] = [];
  let source: RegistrySource | undefined;
  if (loaded.config.filterSource) {
    try {
      source = await RegistrySource.open(loaded.config.filterSource, dir);
    } catch (e) {
      throw new MeshConfigError([loaded.issue('/filterSource/lockFile', errorMessage(e))]);
    }
  }
  const artifacts = new Map<string, Promise<{ artifact: FilterArtifact; location: string }>>();
  const filters = new Map<string, ResolvedFilter>();
  const wasmFiles = new Set<string>();
  const entries = loaded.config.bindings.flatMap((b, i) => b.filters.map((f, j) => ({ f, pointer: `/bindings/${i}/filters/${j}`, bindingName: b.name })));
  // Start every load, then report in file order.
  const pending = entries.map(({ f, pointer }) => {
    const key = `${f.ref}\0${f.sha256 ?? ''}`;
    let p = artifacts.get(key);
    if (!p) {
      p = loadRef(f, loaded, dir, pointer, source, notes);
      artifacts.set(key, p);
    }
    return p.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e }));
  });
  const results = await Promise.all(pending);
  const issues: ConfigIssue[] = [];
  for (let k = 0; k < entries.length; k++) {
    const { f, pointer, bindingName } = entries[k]!;
    const r = results[k]!;
    if (!r.ok) {
      if (r.e instanceof MeshConfigError) issues.push(...r.e.issues);
      else if (r.e instanceof AmbitError && r.e.code !== 'AMBIT_ERR_FILTER_PACKAGE') {
        // Integrity failures keep their own code: a tampered or stale component is not a typo.
        throw new AmbitError(r.e.code, `${r.e.code}: ${where(loaded, `${pointer}/${f.sha256 ? 'sha256' : 'ref'}`)}: ${r.e.message}`, { cause: r.e });
      } else issues.push(loaded.issue(`${pointer}/ref`, errorMessage(r.e)));
      continue;
    }
    const { artifact, location } = r.v;
    const name = f.name ?? artifact.name;
    issues.push(...trustIssues(loaded, pointer, f, artifact));
    try {
      const binding = bindingFromArtifact(artifact, {
        name, config: f.config, failurePolicy: f.failurePolicy, exposeErrors: f.exposeErrors, deadlineMs: f.deadlineMs, memoryMaxPages: f.memoryMaxPages, instances: f.instances,
      });
      // Shared storage belongs to this filter of this (uniquely named) binding: two services'
      // rate limits never share buckets by accident; a reload keeps them.
      filters.set(pointer, { id: pointer, binding: { ...binding, sharedScope: `${bindingName}/${name}`, sharedKeys: f.maxKeys }, artifact, location });
      wasmFiles.add(artifact.origin);
    } catch (e) {
      if (!(e instanceof AmbitError) || e.code !== 'AMBIT_ERR_CONFIG_INVALID') throw e;
      issues.push(...configIssues(loaded, pointer, artifact, f.config, e));
    }
  }
  if (issues.length > 0) {
    const seen = new Set<string>();
    throw new MeshConfigError(issues.filter((i) => !seen.has(formatIssue(i)) && !!seen.add(formatIssue(i))));
  }
  if (source && await source.save()) notes.push(`filter lock written: ${source.lockPath}`);
  return { filters, wasmFiles: [...wasmFiles], notes };
}

/**
 * What the operator did not allow: an npm ref without a pin (unless `allowUnpinned`), or a
 * filter declaring capabilities beyond the binding's grant. Each names what to change.
 */
function trustIssues(loaded: LoadedMeshConfig, pointer: string, f: FilterRefConfig, artifact: FilterArtifact): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (!f.sha256 && !f.allowUnpinned && parseFilterRef(f.ref).kind === 'npm') {
    issues.push(loaded.issue(`${pointer}/ref`,
      `npm filter ${f.ref} is not pinned: anything installed under that name would load with whatever capabilities it declares; pin what is installed now with sha256: ${artifact.digest} (its filter digest: \`ambit digest <package folder>\` prints it), or say allowUnpinned: true`));
  }
  if (f.capabilities) {
    const beyond = artifact.capabilities.filter((c) => !f.capabilities!.includes(c));
    if (beyond.length > 0) {
      issues.push(loaded.issue(`${pointer}/capabilities`,
        `filter ${artifact.name} declares ${beyond.join(', ')} beyond this binding's grant (${f.capabilities.join(', ') || 'none'}); grant ${beyond.length > 1 ? 'them' : 'it'} here if you trust the filter with ${beyond.length > 1 ? 'them' : 'it'}, or use a filter that needs less`));
    }
  }
  return issues;
}

/** The engine bindings of a plan's filters, in order (for `engine.createChain`). */
export function chainBindings(plan: { filters: ReadonlyArray<{ id: string }> }, resolved: ResolvedFilters): FilterBinding[] {
  return plan.filters.map((f) => {
    const r = resolved.filters.get(f.id);
    if (!r) throw new AmbitError('AMBIT_ERR_MESH_CONFIG', `filter ${f.id} was not resolved: resolve the filters of the same config the plan came from`);
    return r.binding;
  });
}

function where(loaded: LoadedMeshConfig, pointer: string): string {
  const i = loaded.issue(pointer, '');
  return i.line === undefined ? `${i.file}: ${pointer}` : `${i.file}:${i.line}:${i.col ?? 1}: ${pointer}`;
}

async function loadRef(
  f: FilterRefConfig, loaded: LoadedMeshConfig, dir: string, pointer: string, source: RegistrySource | undefined, notes: string[],
): Promise<{ artifact: FilterArtifact; location: string }> {
  let ref;
  try {
    ref = parseFilterRef(f.ref);
  } catch (e) {
    throw new MeshConfigError([loaded.issue(`${pointer}/ref`, errorMessage(e))]);
  }
  let location: string;
  if (ref.kind === 'path') {
    location = path.resolve(dir, ref.path);
  } else if (source) {
    // Through the registry: the lock, the cache, the registry's integrity and signatures.
    const r = await source.resolve(f.ref.trim(), ref.name, ref.range);
    location = r.dir;
    notes.push(`${f.ref} → ${r.entry.name}@${r.entry.version} (${r.fromLock ? 'from the filter lock' : `resolved in ${source.registry}`}; integrity ${r.entry.integrity.slice(0, 17)}…, signatures: ${r.entry.signatures}, provenance: ${r.entry.provenance})`);
  } else {
    location = await findPackage(ref.name, ref.range, loaded, dir, `${pointer}/ref`);
  }
  return { artifact: await loadFilterArtifact(location, f.sha256), location };
}

/**
 * Finds an installed npm package the way Node would from the config file's folder
 * (node_modules there, then in each parent) and checks its version against the range.
 */
async function findPackage(name: string, range: string | undefined, loaded: LoadedMeshConfig, dir: string, pointer: string): Promise<string> {
  const req = createRequire(path.join(dir, '__mesh_config__.js'));
  let pkgJson: string | undefined;
  try {
    pkgJson = req.resolve(`${name}/package.json`);
  } catch {
    // Packages whose "exports" hide package.json: look for the folder as Node would.
    for (const base of req.resolve.paths(name) ?? []) {
      const candidate = path.join(base, name, 'package.json');
      if (await exists(candidate)) {
        pkgJson = candidate;
        break;
      }
    }
  }
  const spec = range ? `${name}@${range}` : name;
  if (!pkgJson) {
    throw new MeshConfigError([loaded.issue(pointer,
      `filter package ${name} is not installed (looked in node_modules of ${dir} and its parents); run: npm install ${spec}`)]);
  }
  const pkgDir = path.dirname(pkgJson);
  if (range) {
    let version: unknown;
    try {
      // Read, not require(): require caches, and a reload after `npm install` must see the new version.
      version = (JSON.parse(await readFile(pkgJson, 'utf8')) as { version?: unknown }).version;
    } catch (e) {
      throw new MeshConfigError([loaded.issue(pointer, `cannot read ${pkgJson}: ${errorMessage(e)}`)]);
    }
    if (typeof version !== 'string' || semver.valid(version) === null) {
      throw new MeshConfigError([loaded.issue(pointer, `${pkgJson} has no valid version (${JSON.stringify(version)}); reinstall: npm install ${spec}`)]);
    }
    if (!semver.satisfies(version, range)) {
      throw new MeshConfigError([loaded.issue(pointer,
        `${name} ${version} is installed (${pkgDir}) but the binding wants ${range}; run: npm install ${spec}`)]);
    }
  }
  return pkgDir;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

// Same options as the SDK's validateConfig, so both agree on what is valid.
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });

/** Re-validates a rejected filter config to place each error in the YAML; falls back to the SDK's message. */
function configIssues(loaded: LoadedMeshConfig, pointer: string, artifact: FilterArtifact, config: unknown, e: AmbitError): ConfigIssue[] {
  const hint = `(filter ${artifact.name}: see its schema)`;
  let errors: ErrorObject[] | null | undefined;
  try {
    const validate = ajv.compile(artifact.schema ?? {});
    if (!validate(config === undefined ? {} : structuredClone(config))) errors = validate.errors;
  } catch {
    errors = undefined;
  }
  if (!errors?.length) return [loaded.issue(`${pointer}/config`, `${e.message}`)];
  return errors.map((err) => {
    let at = `${pointer}/config${err.instancePath}`;
    let message = err.message ?? err.keyword;
    let preferKey = false;
    if (err.keyword === 'additionalProperties') {
      at += `/${String((err.params as { additionalProperty: string }).additionalProperty).replace(/~/g, '~0').replace(/\//g, '~1')}`;
      message = 'unknown property';
      preferKey = true;
    } else if (err.keyword === 'enum') {
      message = `must be one of: ${((err.params as { allowedValues: unknown[] }).allowedValues).map(String).join(', ')}`;
    }
    return loaded.issue(at, `${message} ${hint}`, preferKey);
  });
}
