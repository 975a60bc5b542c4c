import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AmbitError, errorMessage } from './errors.js';
import { sha256Hex } from './component.js';
import { filterDigest } from './digest.js';
import { CAPABILITIES, type Capability, type PhaseName } from '../abi/types.js';

/** `dist/manifest.json`, written by `ambit-filter build` next to the wasm. */
export interface FilterManifest {
  /** npm package name. */
  package: string;
  version: string;
  /** Filter name used in logs and metrics. */
  name: string;
  world: string;
  /** `quickjs` or `starlingmonkey`. */
  engine: string;
  wasm: string;
  sha256: string;
  size: number;
  capabilities: Capability[];
  phases: PhaseName[];
  schema: object | null;
  sdkVersion: string;
}

/** The `ambit` field of a filter package's package.json. */
export interface PackageField {
  /** Path of the component, relative to the package. */
  filter: string;
  /** Path of the config JSON schema. */
  schema?: string;
  /** TypeScript entry, for `ambit-filter build`. Default `src/filter.ts`. */
  source?: string;
  capabilities?: Capability[];
}

/** A filter ready to hand to an engine. */
export interface FilterArtifact {
  name: string;
  wasm: Uint8Array;
  sha256: string;
  /** The filter digest (`digest.ts`): over the component, its capabilities and its schema. What a pin names. */
  digest: string;
  schema: object | undefined;
  capabilities: Capability[];
  /** Where it came from, for messages. */
  origin: string;
  manifest: FilterManifest | undefined;
}

export function checkCapabilities(caps: unknown, where: string): Capability[] {
  if (caps === undefined) return ['log'];
  if (!Array.isArray(caps) || caps.some((c) => !CAPABILITIES.includes(c as Capability))) {
    throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `${where}: capabilities must be a list of ${CAPABILITIES.join(', ')}; got ${JSON.stringify(caps)}`);
  }
  return caps as Capability[];
}

async function readJson(file: string, what: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `cannot read ${what} ${file}: ${errorMessage(e)}`, { cause: e });
  }
}

/**
 * Loads a filter from a package folder (its package.json `ambit.filter`), or from a
 * `.wasm` file with a `manifest.json` beside it. `expectedSha256` pins the filter digest
 * (`digest.ts`: the component, its capabilities and its schema; hex or `sha256-<base64>` as in
 * npm's integrity field).
 */
export async function loadFilterArtifact(ref: string, expectedSha256?: string): Promise<FilterArtifact> {
  const target = path.resolve(ref);
  let info;
  try {
    info = await stat(target);
  } catch {
    throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `filter ${ref} not found (looked at ${target}); give a filter package folder or a .wasm file`);
  }
  let wasmPath: string;
  let manifest: FilterManifest | undefined;
  let schema: object | undefined;
  let capabilities: Capability[] | undefined;
  let name: string | undefined;
  if (info.isDirectory()) {
    const pkg = (await readJson(path.join(target, 'package.json'), 'filter package')) as { name?: string; ambit?: PackageField };
    if (!pkg.ambit || typeof pkg.ambit.filter !== 'string') {
      throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `${target}/package.json has no "ambit": { "filter": "dist/filter.wasm" } field: it is not an Ambit filter package`);
    }
    wasmPath = path.join(target, pkg.ambit.filter);
    if (pkg.ambit.schema) schema = (await readJson(path.join(target, pkg.ambit.schema), 'config schema')) as object;
    capabilities = pkg.ambit.capabilities && checkCapabilities(pkg.ambit.capabilities, `${target}/package.json`);
    name = pkg.name;
  } else {
    wasmPath = target;
  }
  const manifestPath = path.join(path.dirname(wasmPath), 'manifest.json');
  try {
    await stat(manifestPath);
    manifest = (await readJson(manifestPath, 'filter manifest')) as FilterManifest;
  } catch (e) {
    if (e instanceof AmbitError) throw e;
  }
  let wasm: Uint8Array;
  try {
    wasm = new Uint8Array(await readFile(wasmPath));
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE', `cannot read filter component ${wasmPath}: ${errorMessage(e)}; was the filter built (ambit-filter build)?`, { cause: e });
  }
  const sha256 = sha256Hex(wasm);
  if (manifest && manifest.sha256 !== sha256) {
    throw new AmbitError('AMBIT_ERR_INTEGRITY', `${wasmPath} does not match its manifest (sha256 ${sha256}, manifest says ${manifest.sha256}); rebuild or reinstall the filter`);
  }
  const effective = {
    schema: schema ?? manifest?.schema ?? undefined,
    capabilities: capabilities ?? (manifest ? checkCapabilities(manifest.capabilities, manifestPath) : ['log' as const]),
  };
  const digest = filterDigest({ sha256, ...effective });
  if (expectedSha256 && !integrityMatches(expectedSha256, digest)) {
    const hint = integrityMatches(expectedSha256, sha256)
      ? `the pin is the component's sha256 alone, which leaves its capabilities and schema open: pin the filter digest ${digest} instead`
      : `its filter digest is ${digest} (over the component, sha256 ${sha256}, its capabilities ${effective.capabilities.join(',')} and its schema): refusing to load it`;
    throw new AmbitError('AMBIT_ERR_INTEGRITY', `${wasmPath} does not match the pin: the binding pins ${expectedSha256}, but ${hint}`);
  }
  return {
    name: manifest?.name ?? name ?? path.basename(wasmPath, '.wasm'),
    wasm,
    sha256,
    digest,
    ...effective,
    origin: wasmPath,
    manifest,
  };
}

function integrityMatches(expected: string, hex: string): boolean {
  if (expected.startsWith('sha256-')) return Buffer.from(hex, 'hex').toString('base64') === expected.slice(7);
  return expected.toLowerCase() === hex;
}
