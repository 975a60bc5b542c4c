import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { AmbitError, errorMessage } from './errors.js';
import { capMemory } from './memory.js';
import { bindComponent } from './bind.js';
import { directShape, instantiateDirect, type DirectShape } from './direct.js';
import { TYPES_IMPORT } from './resources.js';
import {
  HANDLER_INTERFACE, HOST_FUNCTIONS, HOST_INTERFACE, TYPES_INTERFACE, WIT_PACKAGE, WORLD_VERSION, type ComponentHandler, type Handler, type HostImports,
} from '../abi/types.js';

// QuickJS components use extended-const initialisers, behind a flag on Node 20.
// The flag is process-wide and must be set before the first compile.
setFlagsFromString('--experimental-wasm-extended-const');
// Compile every function of a filter when it loads, not on its first call: a JS engine
// module has thousands, and compiling them lazily put tens of milliseconds on the first
// requests of each worker (past a 50 ms deadline on a busy machine).
setFlagsFromString('--no-wasm-lazy-compilation');

/** A component turned into an ES module plus core modules, ready to compile. */
export interface PreparedComponent {
  sha256: string;
  /** Folder holding the transpiled glue and core modules. */
  dir: string;
  /** The ES module exporting `instantiate(getCoreModule, imports, instantiateCore)`. */
  gluePath: string;
  /** File names of the core modules inside `dir`. */
  coreFiles: string[];
}

/** Core modules compiled under one memory cap; can be posted to worker threads. */
export type CoreModules = Record<string, WebAssembly.Module>;

/** Names the transpiler and what this file does to its output: a change of either makes a new cache entry. */
const TRANSPILER_TAG = 'jco-transpile-0.15-world-0.2';
const COMPONENT_LAYER = [0x0d, 0x00, 0x01, 0x00];

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function defaultCacheDir(): string {
  return process.env.AMBIT_CACHE_DIR ?? path.join(os.tmpdir(), 'ambit-cache');
}

/** Tells a component from a core module from something else, with a message that says which. */
export function checkComponentBinary(bytes: Uint8Array, label: string): void {
  const magic = bytes.length >= 8 && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d;
  if (!magic) {
    throw new AmbitError('AMBIT_ERR_NOT_WASM', `${label} is not a WebAssembly binary (no \\0asm header); point the binding at the filter's dist/filter.wasm`);
  }
  const layer = Array.from(bytes.subarray(4, 8));
  if (layer.join() !== COMPONENT_LAYER.join()) {
    throw new AmbitError(
      'AMBIT_ERR_NOT_COMPONENT',
      `${label} is a core WebAssembly module, not a component; build the filter with \`ambit-filter build\` so it targets the ambit:filter world`,
    );
  }
}

/**
 * Transpiles a filter component for V8 (once per content hash; the result is cached
 * on disk) and checks that it is of the `ambit:filter` world.
 */
export async function prepareComponent(
  wasm: Uint8Array, options: { label?: string; cacheDir?: string } = {},
): Promise<PreparedComponent> {
  const label = options.label ?? 'filter';
  checkComponentBinary(wasm, label);
  const sha256 = sha256Hex(wasm);
  const dir = path.join(options.cacheDir ?? defaultCacheDir(), TRANSPILER_TAG, sha256);
  const marker = path.join(dir, 'prepared.json');
  if (existsSync(marker)) {
    try {
      const meta = JSON.parse(await readFile(marker, 'utf8')) as { sha256: string; coreFiles: string[] };
      if (meta.sha256 === sha256 && meta.coreFiles.every((f) => existsSync(path.join(dir, f)))) {
        return { sha256, dir, gluePath: path.join(dir, 'component.js'), coreFiles: meta.coreFiles };
      }
    } catch {
      // An unreadable cache entry is rebuilt below.
    }
  }
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
  let result: Awaited<ReturnType<typeof transpileBytes>>;
  try {
    result = await transpileBytes(wasm, {
      name: 'component',
      instantiation: 'sync',
      noComponentErrorWrapping: true,
      emitTypescriptDeclarations: false,
      quiet: true,
    } as Parameters<typeof transpileBytes>[1]);
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_NOT_COMPONENT', `${label} could not be read as a component: ${errorMessage(e)}`, { cause: e });
  }
  checkWorld(label, result.imports, result.exports);

  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await mkdir(tmp, { recursive: true });
  const coreFiles: string[] = [];
  for (const [name, data] of Object.entries(result.files)) {
    if (name.endsWith('.d.ts')) continue;
    let out: Uint8Array = data;
    if (name === 'component.js') out = Buffer.from(hoistDebugCheck(Buffer.from(data).toString('utf8')));
    if (name.endsWith('.wasm')) coreFiles.push(name);
    await mkdir(path.dirname(path.join(tmp, name)), { recursive: true });
    await writeFile(path.join(tmp, name), out);
  }
  await writeFile(path.join(tmp, 'package.json'), '{"type":"module"}\n');
  await writeFile(path.join(tmp, 'prepared.json'), JSON.stringify({ sha256, coreFiles }));
  await rm(dir, { recursive: true, force: true });
  try {
    await rename(tmp, dir);
  } catch (e) {
    // Another process prepared the same component at the same moment: use theirs.
    await rm(tmp, { recursive: true, force: true });
    if (!existsSync(marker)) throw e;
  }
  return { sha256, dir, gluePath: path.join(dir, 'component.js'), coreFiles };
}

/** The SDK a filter of an older world is rebuilt with. */
const REBUILD_WITH = `@ambit/filter-sdk ${WORLD_VERSION} (npx ambit-filter build)`;

/** Whether `a` (`major.minor`) comes before `b`. */
function olderSeries(a: string, b: string): boolean {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am < bm || (am === bm && an < bn);
}

function checkWorld(label: string, imports: string[], exports: Array<[string, string]>): void {
  const exported = exports.map(([name]) => name);
  const handler = exported.find((n) => n.startsWith(`${HANDLER_INTERFACE}@${WORLD_VERSION}.`));
  if (!handler) {
    const older = exported.find((n) => n.startsWith(`${HANDLER_INTERFACE}@`));
    if (older) {
      const series = older.slice(HANDLER_INTERFACE.length + 1).split('.').slice(0, 2).join('.');
      const runs = `this host runs ambit:filter@${WORLD_VERSION}.x filters`;
      throw new AmbitError(
        'AMBIT_ERR_WRONG_WORLD',
        olderSeries(series, WORLD_VERSION)
          ? `${label} was built for ambit:filter@${series}.x (it exports ${older}); ${runs}: rebuild it with ${REBUILD_WITH}`
          : `${label} was built for ambit:filter@${series}.x (it exports ${older}), newer than this host's world; ${runs}: upgrade the node proxy, or rebuild the filter with ${REBUILD_WITH}`,
      );
    }
    throw new AmbitError(
      'AMBIT_ERR_WRONG_WORLD',
      `${label} is a component of another world: it exports [${exported.join(', ') || 'nothing'}] but not ${HANDLER_INTERFACE}@${WORLD_VERSION}.x; build it against the ambit:filter world with \`ambit-filter build\``,
    );
  }
  const foreign = imports.filter((i) => !i.startsWith('ambit:filter/'));
  if (foreign.length > 0) {
    throw new AmbitError(
      'AMBIT_ERR_WRONG_WORLD',
      `${label} imports [${foreign.join(', ')}], which the ambit:filter world does not provide; filters may import only ${HOST_INTERFACE} and ${TYPES_INTERFACE} (build with \`ambit-filter build\`)`,
    );
  }
}

/** The generated glue checks an environment variable on every lift and lower; check it once. */
function hoistDebugCheck(js: string): string {
  const needle = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
  if (!js.includes(needle)) return js;
  return `const __ambitJcoDebug = Boolean(globalThis?.process?.env?.JCO_DEBUG);\n${js.split(needle).join('if (!__ambitJcoDebug) { return; }')}`;
}

/** Compiles the core modules with every defined memory capped at `memoryMaxPages`. */
export async function compileCore(prepared: PreparedComponent, memoryMaxPages: number, label = 'filter'): Promise<CoreModules> {
  const modules: CoreModules = {};
  for (const file of prepared.coreFiles) {
    const bytes = new Uint8Array(await readFile(path.join(prepared.dir, file)));
    modules[file] = await WebAssembly.compile(capMemory(bytes, memoryMaxPages, `${label} (${file})`) as Uint8Array<ArrayBuffer>);
  }
  return modules;
}

type Instantiate = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: Record<string, unknown>,
  instantiateCore?: (m: WebAssembly.Module, i: WebAssembly.Imports) => WebAssembly.Instance,
) => Record<string, unknown>;

const glueCache = new Map<string, Promise<Instantiate>>();

/** Loads the transpiled glue module (once per process or worker). */
export function loadGlue(gluePath: string): Promise<Instantiate> {
  let p = glueCache.get(gluePath);
  if (!p) {
    p = import(pathToFileURL(gluePath).href).then((m: { instantiate: Instantiate }) => m.instantiate);
    glueCache.set(gluePath, p);
  }
  return p;
}

/**
 * How a component is bound on V8: `direct` (the world's own binding, `direct.ts`, for a
 * component of one core module; others fall back to jco's glue) or `jco` (jco's
 * generated glue always). Default `direct`; `AMBIT_V8_BINDING=jco` picks jco's.
 */
export type V8Binding = 'direct' | 'jco';

const shapes = new WeakMap<CoreModules, DirectShape | null>();

function shapeOf(modules: CoreModules): DirectShape | undefined {
  let s = shapes.get(modules);
  if (s === undefined) {
    s = directShape(modules) ?? null;
    shapes.set(modules, s);
  }
  return s ?? undefined;
}

/** Which binding `instantiateHandler` would use for these modules. */
export function bindingOf(modules: CoreModules, binding: V8Binding = defaultBinding()): V8Binding {
  return binding === 'direct' && shapeOf(modules) ? 'direct' : 'jco';
}

function defaultBinding(): V8Binding {
  return process.env.AMBIT_V8_BINDING === 'jco' ? 'jco' : 'direct';
}

/**
 * Creates one instance and returns its `handler` export, bound to the host's data view
 * ({@link bindComponent}). Synchronous, so it can run between calls. `label` is the
 * filter's name, used in the messages of its failures.
 */
export function instantiateHandler(
  instantiate: Instantiate, modules: CoreModules, host: HostImports, label = 'filter', binding: V8Binding = defaultBinding(),
): Handler {
  const shape = binding === 'direct' ? shapeOf(modules) : undefined;
  if (shape) {
    try {
      return bindComponent(instantiateDirect(modules[shape.file]!, shape, host), label);
    } catch (e) {
      if (e instanceof AmbitError) throw e;
      throw new AmbitError('AMBIT_ERR_INSTANTIATE', `${label}: instantiation failed: ${errorMessage(e)}`, { cause: e });
    }
  }
  const hostImport: Record<string, unknown> = {};
  for (const fn of HOST_FUNCTIONS) hostImport[fn] = host[fn];
  const version = WIT_PACKAGE.slice(WIT_PACKAGE.indexOf('@'));
  try {
    const exports = instantiate(
      (name) => {
        const m = modules[name];
        if (!m) throw new Error(`core module ${name} missing`);
        return m;
      },
      {
        [HOST_INTERFACE]: hostImport, [`${HOST_INTERFACE}${version}`]: hostImport,
        [TYPES_INTERFACE]: TYPES_IMPORT, [`${TYPES_INTERFACE}${version}`]: TYPES_IMPORT,
      },
      (m, i) => new WebAssembly.Instance(m, i),
    );
    const handler = (exports.handler ?? exports[`${HANDLER_INTERFACE}${version}`]) as ComponentHandler | undefined;
    if (!handler) throw new Error('the component has no handler export');
    return bindComponent(handler, label);
  } catch (e) {
    if (e instanceof AmbitError) throw e;
    throw new AmbitError('AMBIT_ERR_INSTANTIATE', `${label}: instantiation failed: ${errorMessage(e)}`, { cause: e });
  }
}
