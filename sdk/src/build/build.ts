import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SourceMapPayload } from 'node:module';
import { AmbitError, errorMessage } from '../host/errors.js';
import { prepareComponent, sha256Hex } from '../host/component.js';
import { checkCapabilities, type FilterManifest, type PackageField } from '../host/package.js';
import { PHASE_NAMES, WIT_PACKAGE, type Capability, type PhaseName } from '../abi/types.js';
import { typecheck } from './typecheck.js';
import { findCapabilityUses, undeclaredUses } from './lint.js';
import { withCustomSection } from './custom-section.js';
import { mapBundleMessage } from './sourcemap.js';
// The bundle's name in stack traces, and the custom section holding its source map
// (sources relative to the package), read back by the host to report traps.
import { BUNDLE_NAME, SOURCE_MAP_SECTION } from '../host/source-map.js';

/** The JavaScript engine embedded in the component: QuickJS-ng, pre-initialized. */
export type GuestEngine = 'quickjs';

export interface BuildOptions {
  /** The filter package folder (holding package.json). */
  dir: string;
  /** `quickjs` (the only engine): one core module, pre-initialized with the filter. */
  engine?: GuestEngine;
  /** Skip the TypeScript check (the bundle is still built from TypeScript; capability uses are still checked). */
  skipTypecheck?: boolean;
  /** Progress lines; default: nothing. */
  log?: (line: string) => void;
}

export interface BuildResult {
  wasmPath: string;
  manifestPath: string;
  schemaPath: string;
  manifest: FilterManifest;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The WIT world shipped with the SDK. */
export const WIT_DIR = path.resolve(here, '../../wit');
/** The engine module: QuickJS-ng and the world's bindings (`sdk/engine`, built by its build.sh). */
export const ENGINE_WASM = path.resolve(here, '../../engine/quickjs.wasm');
const SDK_DIR = path.resolve(here, '../..');
const SDK_VERSION = (JSON.parse(await readFile(path.resolve(here, '../../package.json'), 'utf8')) as { version: string }).version;
/** The schema of a filter without `config`: it takes none. */
const NO_CONFIG_SCHEMA = { type: 'object', description: 'This filter takes no configuration.', properties: {}, additionalProperties: false };

interface FilterPackageJson {
  name?: string;
  version?: string;
  ambit?: Partial<PackageField>;
}

interface DefinitionFacts {
  name: string | undefined;
  schema: object | null;
  capabilities: Capability[];
  phases: PhaseName[];
}

function fail(message: string, cause?: unknown): never {
  throw new AmbitError('AMBIT_ERR_BUILD', message, cause === undefined ? undefined : { cause });
}

/**
 * Builds a filter package: type-check, bundle with esbuild, componentize, check the
 * component against the `ambit:filter` world, and write `dist/filter.wasm`,
 * `dist/schema.json` and `dist/manifest.json`.
 */
export async function buildFilter(options: BuildOptions): Promise<BuildResult> {
  const dir = path.resolve(options.dir);
  const log = options.log ?? (() => {});
  const engine = options.engine ?? 'quickjs';
  if (engine !== 'quickjs') fail(`unknown engine "${engine as string}": the SDK builds filters with quickjs`);
  const pkgPath = path.join(dir, 'package.json');
  if (!existsSync(pkgPath)) fail(`${dir} has no package.json: run ambit-filter build in a filter package folder`);
  let pkg: FilterPackageJson;
  try {
    pkg = JSON.parse(await readFile(pkgPath, 'utf8')) as FilterPackageJson;
  } catch (e) {
    fail(`cannot read ${pkgPath}: ${errorMessage(e)}`, e);
  }
  if (pkg === null || typeof pkg !== 'object' || Array.isArray(pkg)) fail(`${pkgPath} is not a JSON object`);
  const field = pkg.ambit ?? {};
  const wasmRel = field.filter ?? 'dist/filter.wasm';
  const schemaRel = field.schema ?? path.join(path.dirname(wasmRel), 'schema.json');
  const entry = path.join(dir, field.source ?? 'src/filter.ts');
  if (!existsSync(entry)) fail(`filter source ${path.relative(dir, entry)} not found in ${dir}: set "ambit": { "source": "…" } in package.json`);
  const outDir = path.dirname(path.join(dir, wasmRel));
  const packageName = pkg.name ?? path.basename(dir);
  const started = performance.now();

  log(options.skipTypecheck ? 'checking capabilities' : `type-checking ${path.relative(dir, entry)}`);
  const checked = await typecheck(entry, dir);
  if (!options.skipTypecheck && checked.errors.length > 0) fail(`TypeScript found ${checked.errors.length} error(s):\n${checked.errors.join('\n')}`);

  // Loading the definition in Node first reports a missing default export, or a
  // top-level throw, against the filter's own source lines.
  const facts = await inspectDefinition(entry, dir, outDir, packageName, field.capabilities);
  const undeclared = undeclaredUses(findCapabilityUses(checked.program, checked.ts, dir), facts.capabilities);
  if (undeclared.length > 0) fail(`the filter uses capabilities it does not declare:\n${undeclared.join('\n')}`);
  log(`filter "${facts.name ?? shortName(packageName)}": phases ${facts.phases.join(', ')}; capabilities ${facts.capabilities.join(', ') || 'none'}`);

  log('bundling with esbuild');
  const { js: bundle, map } = await bundleFilter(entry, dir, packageName);
  log(`bundled ${(bundle.length / 1024).toFixed(1)} KiB of JavaScript`);

  log('pre-initializing the QuickJS engine with the filter');
  const native = loadNative();
  let core: Uint8Array;
  try {
    core = native.buildGuest(await readFile(ENGINE_WASM), bundle, BUNDLE_NAME, WIT_DIR, 'filter');
  } catch (e) {
    const mapped = mapBundleMessage(errorMessage(e).replace(/^AMBIT_ERR_BUILD: /, ''), BUNDLE_NAME, map, dir, dir);
    const where = mapped.origin ? `${mapped.origin} - ` : '';
    fail(`${where}the filter could not be evaluated at build time:\n${mapped.text.trimEnd()}`, e);
  }
  const component = withCustomSection(core, SOURCE_MAP_SECTION, Buffer.from(JSON.stringify(map)));

  log('checking the component against the ambit:filter world');
  await prepareComponent(component, { label: `${packageName} (built)` });

  await mkdir(outDir, { recursive: true });
  const wasmPath = path.join(dir, wasmRel);
  await writeFile(wasmPath, component);
  // Always written: a package's `ambit.schema` names a file that exists, even for a
  // filter that takes no configuration (its schema accepts only an empty object).
  const schema = facts.schema ?? NO_CONFIG_SCHEMA;
  const schemaPath = path.join(dir, schemaRel);
  await writeFile(schemaPath, `${JSON.stringify(schema, null, 2)}\n`);
  const manifest: FilterManifest = {
    package: packageName,
    version: pkg.version ?? '0.0.0',
    name: facts.name ?? shortName(packageName),
    world: `${WIT_PACKAGE.replace('@', '/filter@')}`,
    engine: 'quickjs',
    wasm: path.basename(wasmPath),
    sha256: sha256Hex(component),
    size: component.length,
    capabilities: facts.capabilities,
    phases: facts.phases,
    schema: facts.schema ?? NO_CONFIG_SCHEMA,
    sdkVersion: SDK_VERSION,
  };
  const manifestPath = path.join(path.dirname(wasmPath), 'manifest.json');
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  log(`wrote ${path.relative(dir, wasmPath)} (${(component.length / 2 ** 20).toFixed(2)} MiB, sha256 ${manifest.sha256.slice(0, 12)}…) in ${secs} s`);
  return { wasmPath, manifestPath, schemaPath, manifest };
}

function shortName(pkgName: string): string {
  return pkgName.replace(/^@[^/]+\//, '').replace(/^filter-/, '');
}

interface EsbuildMessage {
  text: string;
  location?: { file: string; line: number; column: number; lineText: string } | null;
}

/** Reports esbuild's errors as `file:line:column - text` (paths relative to the filter package). */
function failBundling(e: unknown): never {
  const errors = (e as { errors?: EsbuildMessage[] }).errors;
  const lines = errors?.map((m) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1} - ${m.text}\n    ${m.location.lineText}` : m.text));
  fail(`bundling failed:\n${lines?.length ? lines.join('\n') : errorMessage(e)}`, e);
}

/** `line:column` (1-based) of an offset in a text. */
function lineCol(text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n');
  return `${before.length}:${before[before.length - 1]!.length + 1}`;
}

/** Says where the filter's source goes wrong when its module has no usable default export. */
function defaultExportProblem(source: string, rel: string, exported: string[]): string {
  const want = 'must `export default defineFilter({ ... })` with at least one of onConnection, onRequest, onResponse';
  const def = /\bexport\s+default\b/.exec(source);
  if (def) return `${rel}:${lineCol(source, def.index)} - the default export is not a filter: ${rel} ${want}`;
  const call = /\bdefineFilter\s*\(/.exec(source);
  const others = exported.length > 0 ? ` (it exports ${exported.join(', ')})` : '';
  if (call) return `${rel}:${lineCol(source, call.index)} - defineFilter(...) is not the default export${others}: ${rel} ${want}`;
  return `${rel}:1:1 - no default export${others}: ${rel} ${want}`;
}

/**
 * Loads the filter definition in Node (bundled, with the SDK's guest-side host left
 * uninstalled) to read its schema, phases and capabilities. Errors name positions in
 * the filter's own sources.
 */
async function inspectDefinition(
  entry: string, dir: string, outDir: string, packageName: string, declared: unknown,
): Promise<DefinitionFacts> {
  const esbuild = await import('esbuild');
  const name = `.inspect-${process.pid}.mjs`;
  const tmp = path.join(outDir, name);
  const rel = path.relative(dir, entry);
  await mkdir(outDir, { recursive: true });
  let map: SourceMapPayload;
  try {
    const out = await esbuild.build({
      entryPoints: [entry],
      absWorkingDir: dir,
      bundle: true,
      format: 'esm',
      platform: 'node',
      outfile: tmp,
      sourcemap: 'external',
      write: false,
      logLevel: 'silent',
      external: ['ambit:filter/*'],
      alias: { '@ambit/filter-sdk': path.resolve(here, '../index.js') },
    });
    const js = out.outputFiles.find((f) => f.path.endsWith('.mjs'));
    const mapFile = out.outputFiles.find((f) => f.path.endsWith('.map'));
    if (!js || !mapFile) fail('esbuild produced no output');
    map = JSON.parse(mapFile.text) as SourceMapPayload;
    await writeFile(tmp, js.contents);
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    failBundling(e);
  }
  try {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(`${pathToFileURL(tmp).href}?t=${Date.now()}`)) as Record<string, unknown>;
    } catch (e) {
      // The filter's top-level code threw: show its own frames, mapped to its sources.
      const stack = e instanceof Error && e.stack ? e.stack : errorMessage(e);
      const frames = stack.split('\n').filter((l, i) => i === 0 || !/^\s+at /.test(l) || l.includes(name));
      const mapped = mapBundleMessage(frames.join('\n'), name, map, dir, outDir);
      const where = mapped.origin ?? `${rel}:1:1`;
      fail(`${where} - the filter's top-level code threw while loading ${rel}:\n${mapped.text.trimEnd()}`, e);
    }
    const def = mod.default as Record<string, unknown> | undefined;
    if (!def || typeof def !== 'object' || !['onConnection', 'onRequest', 'onResponse'].some((k) => typeof def[k] === 'function')) {
      const source = await readFile(entry, 'utf8');
      fail(defaultExportProblem(source, rel, Object.keys(mod).filter((k) => k !== 'default')));
    }
    const phases = PHASE_NAMES.filter((p) => typeof def[{ connection: 'onConnection', requestHeaders: 'onRequest', responseHeaders: 'onResponse' }[p]] === 'function');
    const caps = declared ?? def.capabilities;
    return {
      name: typeof def.name === 'string' ? def.name : undefined,
      schema: def.config === undefined ? null : (JSON.parse(JSON.stringify(def.config)) as object),
      capabilities: checkCapabilities(caps, `${packageName}`),
      phases,
    };
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    fail(`loading the filter definition failed: ${errorMessage(e)}`, e);
  } finally {
    await rm(tmp, { force: true });
  }
}

interface NativeBuilder {
  buildGuest(engine: Buffer, source: string, file: string, witDir: string, world: string): Buffer;
}

/** The build half of `@ambit/native`: the pre-initializer and component encoder. */
function loadNative(): NativeBuilder {
  try {
    const native = createRequire(import.meta.url)('@ambit/native') as Partial<NativeBuilder>;
    if (typeof native.buildGuest !== 'function') throw new Error('this @ambit/native has no buildGuest: update it to the SDK\'s version');
    return native as NativeBuilder;
  } catch (e) {
    fail(`building a filter needs @ambit/native (a prebuilt binary for ${process.platform}-${process.arch}; in a clone of the Ambit repo, install Rust and run npm run build): ${errorMessage(e)}`, e);
  }
}

/**
 * Bundles the filter for the engine: one script that installs the filter as the
 * engine's handler. Whitespace is minified (no file paths end up in the bundle, so the
 * bytes do not depend on where the package sits); names are kept for stack traces.
 * The source map names the package's files relative to it, the SDK's as `@ambit/filter-sdk/…`.
 */
async function bundleFilter(entry: string, dir: string, packageName: string): Promise<{ js: string; map: SourceMapPayload }> {
  const esbuild = await import('esbuild');
  const stub = [
    `import definition from ${JSON.stringify(entry)};`,
    `import { installFilter } from ${JSON.stringify(path.resolve(here, '../guest/runtime.js'))};`,
    `installFilter(definition, ${JSON.stringify(shortName(packageName))});`,
  ].join('\n');
  try {
    const out = await esbuild.build({
      stdin: { contents: stub, resolveDir: dir, sourcefile: 'ambit-entry.js', loader: 'js' },
      absWorkingDir: dir,
      bundle: true,
      format: 'iife',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2022',
      minifyWhitespace: true,
      legalComments: 'none',
      sourcemap: 'external',
      sourcesContent: false,
      outfile: path.join(dir, BUNDLE_NAME),
      write: false,
      logLevel: 'silent',
      alias: { '@ambit/filter-sdk': path.resolve(here, '../guest-index.js') },
      define: { 'process.env.NODE_ENV': '"production"' },
    });
    const js = out.outputFiles.find((f) => f.path.endsWith('.js'));
    const mapFile = out.outputFiles.find((f) => f.path.endsWith('.map'));
    if (!js || !mapFile) fail('esbuild produced no output');
    const map = JSON.parse(mapFile.text) as SourceMapPayload;
    map.sources = map.sources.map((s) => {
      const abs = path.resolve(dir, s);
      const fromSdk = path.relative(SDK_DIR, abs);
      if (!fromSdk.startsWith('..') && !path.isAbsolute(fromSdk)) return `@ambit/filter-sdk/${fromSdk.split(path.sep).join('/')}`;
      return path.relative(dir, abs).split(path.sep).join('/');
    });
    return { js: js.text, map };
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    failBundling(e);
  }
}
