import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SourceMapPayload } from 'node:module';
import { AmbitError, errorMessage } from '../host/errors.js';
import { prepareComponent, sha256Hex } from '../host/component.js';
import { checkCapabilities, type FilterManifest, type PackageField } from '../host/package.js';
import { PHASE_NAMES, WIT_PACKAGE, type Capability, type PhaseName } from '../abi/types.js';
import { typecheck } from './typecheck.js';
import { mapBundleMessage } from './sourcemap.js';

/** The JavaScript engine embedded in the component. */
export type GuestEngine = 'quickjs' | 'starlingmonkey';

export interface BuildOptions {
  /** The filter package folder (holding package.json). */
  dir: string;
  /** Default `quickjs`: small (≈1.6 MB) and fast to call. `starlingmonkey`: SpiderMonkey, ≈12 MB. */
  engine?: GuestEngine;
  /** Skip the TypeScript check (the bundle is still built from TypeScript). */
  skipTypecheck?: boolean;
  /** Progress lines; default: nothing. */
  log?: (line: string) => void;
}

export interface BuildResult {
  wasmPath: string;
  manifestPath: string;
  schemaPath: string | undefined;
  manifest: FilterManifest;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** The WIT world shipped with the SDK. */
export const WIT_DIR = path.resolve(here, '../../wit');
const SDK_VERSION = (JSON.parse(await readFile(path.resolve(here, '../../package.json'), 'utf8')) as { version: string }).version;
const BUNDLE_NAME = 'filter.bundle.js';

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
  if (engine !== 'quickjs' && engine !== 'starlingmonkey') fail(`unknown engine "${engine as string}": use quickjs or starlingmonkey`);
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

  if (!options.skipTypecheck) {
    log(`type-checking ${path.relative(dir, entry)}`);
    const errors = await typecheck(entry, dir);
    if (errors.length > 0) fail(`TypeScript found ${errors.length} error(s):\n${errors.join('\n')}`);
  }

  log('bundling with esbuild');
  // Loading the definition in Node first reports a missing default export, or a
  // top-level throw, against the filter's own source lines.
  const facts = await inspectDefinition(entry, dir, outDir, packageName, field.capabilities);
  const esbuild = await import('esbuild');
  const importHost = engine === 'quickjs'
    ? `import host from '${hostSpecifier()}';`
    : `import * as host from '${hostSpecifier()}';`;
  const stub = [
    importHost,
    `import definition from ${JSON.stringify(entry)};`,
    `import { bindFilter, installHost } from ${JSON.stringify(path.resolve(here, '../guest/runtime.js'))};`,
    'installHost(host);',
    `export const handler = bindFilter(definition, ${JSON.stringify(shortName(packageName))}, host);`,
  ].join('\n');
  let bundle: string;
  let map: SourceMapPayload;
  try {
    const out = await esbuild.build({
      stdin: { contents: stub, resolveDir: dir, sourcefile: 'ambit-entry.js', loader: 'js' },
      absWorkingDir: dir,
      bundle: true,
      format: 'esm',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      target: 'es2022',
      external: ['ambit:filter/*'],
      sourcemap: 'external',
      outfile: path.join(outDir, BUNDLE_NAME),
      write: false,
      logLevel: 'silent',
      alias: { '@ambit/filter-sdk': path.resolve(here, '../guest-index.js') },
      define: { 'process.env.NODE_ENV': '"production"' },
    });
    const js = out.outputFiles.find((f) => f.path.endsWith('.js'));
    const mapFile = out.outputFiles.find((f) => f.path.endsWith('.map'));
    if (!js || !mapFile) fail('esbuild produced no output');
    bundle = js.text;
    map = JSON.parse(mapFile.text) as SourceMapPayload;
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    failBundling(e);
  }
  log(`bundled ${(bundle.length / 1024).toFixed(1)} KiB of JavaScript`);
  log(`filter "${facts.name ?? shortName(packageName)}": phases ${facts.phases.join(', ')}; capabilities ${facts.capabilities.join(', ') || 'none'}`);

  log(`componentizing with ${engine === 'quickjs' ? 'QuickJS' : 'StarlingMonkey'}`);
  await mkdir(outDir, { recursive: true });
  const bundlePath = path.join(outDir, BUNDLE_NAME);
  await writeFile(bundlePath, `${bundle}\n//# sourceMappingURL=${BUNDLE_NAME}.map\n`);
  await writeFile(`${bundlePath}.map`, JSON.stringify(map));
  let component: Uint8Array;
  try {
    component = engine === 'quickjs' ? await componentizeQuickJs(bundle, bundlePath) : await componentizeStarlingMonkey(bundlePath);
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    const mapped = mapBundleMessage(errorMessage(e), BUNDLE_NAME, map, dir, outDir);
    const where = mapped.origin ? `${mapped.origin} - ` : '';
    fail(`${where}componentize failed (the filter's top-level code threw or did not parse):\n${mapped.text.replace(/^[:\s]+/, '').trimEnd()}`, e);
  }

  log('checking the component against the ambit:filter world');
  await prepareComponent(component, { label: `${packageName} (built)` });

  const wasmPath = path.join(dir, wasmRel);
  await writeFile(wasmPath, component);
  let schemaPath: string | undefined;
  if (facts.schema) {
    schemaPath = path.join(dir, schemaRel);
    await writeFile(schemaPath, `${JSON.stringify(facts.schema, null, 2)}\n`);
  }
  const manifest: FilterManifest = {
    package: packageName,
    version: pkg.version ?? '0.0.0',
    name: facts.name ?? shortName(packageName),
    world: `${WIT_PACKAGE.replace('@', '/filter@')}`,
    engine,
    wasm: path.basename(wasmPath),
    sha256: sha256Hex(component),
    size: component.length,
    capabilities: facts.capabilities,
    phases: facts.phases,
    schema: facts.schema,
    sdkVersion: SDK_VERSION,
  };
  const manifestPath = path.join(path.dirname(wasmPath), 'manifest.json');
  await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  log(`wrote ${path.relative(dir, wasmPath)} (${(component.length / 2 ** 20).toFixed(2)} MiB, sha256 ${manifest.sha256.slice(0, 12)}…) in ${secs} s`);
  return { wasmPath, manifestPath, schemaPath, manifest };
}

function hostSpecifier(): string {
  return WIT_PACKAGE.replace('@', '/host@');
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

async function componentizeQuickJs(bundle: string, bundlePath: string): Promise<Uint8Array> {
  const { componentize } = await import('componentize-qjs');
  const { component } = await componentize({
    witPath: WIT_DIR,
    world: 'filter',
    jsSource: bundle,
    jsPath: bundlePath,
    sync: true,
    stubWasi: true,
  });
  return new Uint8Array(component);
}

type ComponentizeJs = { componentize(opts: Record<string, unknown>): Promise<{ component: Uint8Array }> };

async function componentizeStarlingMonkey(bundlePath: string): Promise<Uint8Array> {
  // The package is ESM-only (its exports have no "require" condition), so it cannot
  // be probed with require.resolve: import it and tell "not installed" apart.
  let componentize: ComponentizeJs['componentize'];
  try {
    ({ componentize } = (await import('@bytecodealliance/componentize-js')) as unknown as ComponentizeJs);
  } catch (e) {
    const code = (e as { code?: string }).code;
    // Only "the package itself is missing": a missing dependency of it is reported as
    // "Cannot find package 'X' imported from …/componentize-js/…", which must not match.
    if (code === 'ERR_MODULE_NOT_FOUND' && errorMessage(e).startsWith("Cannot find package '@bytecodealliance/componentize-js'")) {
      fail('the starlingmonkey engine needs @bytecodealliance/componentize-js: npm install @bytecodealliance/componentize-js');
    }
    // A dependency of componentize-js that is not installed is no fault of the filter's
    // top-level code: say what is missing (componentize-js 0.23 imports
    // @bytecodealliance/preview2-shim without declaring it as a dependency).
    if (code === 'ERR_MODULE_NOT_FOUND') {
      const missing = /Cannot find package '([^']+)'/.exec(errorMessage(e))?.[1];
      fail(`the starlingmonkey engine could not be loaded${missing ? `: ${missing} is not installed (npm install ${missing})` : ''}: ${errorMessage(e)}`, e);
    }
    throw e;
  }
  const { component } = await componentize({
    sourcePath: bundlePath,
    witPath: WIT_DIR,
    worldName: 'filter',
    disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
  });
  return new Uint8Array(component);
}
