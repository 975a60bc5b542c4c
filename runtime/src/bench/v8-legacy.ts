/**
 * The 0.1 build of the filter (`bench/fixtures/hello-0.1`) on V8, as the 0.1 SDK ran it:
 * transpiled by jco (cached in the bench's work folder by sha256), its core modules
 * compiled under the binding's memory cap, instantiated through jco's glue with the 0.1
 * host of `v01-host.ts`. Every phase lifts and lowers whole records (the context, the
 * request head and its header list) through jco's generic per-value layer. No 0.1 host
 * remains in the engines; this is the baseline the 0.2 world is compared with.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  AmbitError, BINDING_DEFAULTS, compileCore, loadFilterArtifact, loadGlue, validateConfig, type Context, type PhaseName,
  type PreparedComponent, type RequestAction, type RequestHead,
} from './deps.js';
import { memberConfig } from './inputs.js';
import type { BenchOptions } from './options.js';
import { hostV01 } from './v01-host.js';
import type { V8Chain } from './v8-chain.js';

const WORLD = 'ambit:filter@0.1.0';

/** The `handler` export of a 0.1 component as jco's glue gives it. */
interface HandlerV01 {
  configure(config: string): { tag: 'ok'; val: { name: string; phases: Record<string, boolean> } } | { tag: 'invalid'; val: string };
  onRequestHeaders(ctx: Context, request: RequestHead): RequestAction;
}

/** As the 0.1 host did: the glue's per-lift check of `JCO_DEBUG` in the environment, read once instead. */
function hoistDebugCheck(js: string): string {
  const check = 'if (!globalThis?.process?.env?.JCO_DEBUG) { return; }';
  return `const __jcoDebug = Boolean(globalThis?.process?.env?.JCO_DEBUG);\n${js.split(check).join('if (!__jcoDebug) { return; }')}`;
}

/** Transpiles the 0.1 component once per sha256, into `<workDir>/jco-0.1/<sha256>`. */
async function transpile(wasm: Uint8Array, sha256: string, workDir: string): Promise<PreparedComponent> {
  const dir = path.join(workDir, 'jco-0.1', sha256);
  const gluePath = path.join(dir, 'component.js');
  const marker = path.join(dir, 'prepared.json');
  if (existsSync(marker)) {
    const meta = JSON.parse(await readFile(marker, 'utf8')) as { coreFiles: string[] };
    return { sha256, dir, gluePath, coreFiles: meta.coreFiles };
  }
  const { transpileBytes } = await import('@bytecodealliance/jco-transpile');
  const result = await transpileBytes(wasm, {
    name: 'component', instantiation: 'sync', noComponentErrorWrapping: true, emitTypescriptDeclarations: false, quiet: true,
  } as Parameters<typeof transpileBytes>[1]);
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const coreFiles: string[] = [];
  for (const [name, data] of Object.entries(result.files)) {
    if (name.endsWith('.d.ts')) continue;
    if (name.endsWith('.wasm')) coreFiles.push(name);
    await mkdir(path.dirname(path.join(tmp, name)), { recursive: true });
    await writeFile(path.join(tmp, name), name === 'component.js' ? hoistDebugCheck(Buffer.from(data).toString('utf8')) : data);
  }
  await writeFile(path.join(tmp, 'package.json'), '{"type":"module"}\n');
  await writeFile(path.join(tmp, 'prepared.json'), JSON.stringify({ sha256, coreFiles }));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return { sha256, dir, gluePath, coreFiles };
}

/** A chain of `length` instances of the 0.1 build, each configured as the i-th member. */
export async function legacyChain(opts: BenchOptions, length: number): Promise<V8Chain> {
  const artifact = await loadFilterArtifact(path.join(opts.legacyDir, 'filter.wasm'));
  if (artifact.manifest?.world !== `ambit:filter/filter@0.1.0`) {
    throw new AmbitError('AMBIT_ERR_WRONG_WORLD', `${artifact.origin}: expected a build of ${WORLD}, the manifest says ${artifact.manifest?.world}`);
  }
  const prepared = await transpile(artifact.wasm, artifact.sha256, opts.workDir);
  const modules = await compileCore(prepared, BINDING_DEFAULTS.memoryMaxPages, `${artifact.name} 0.1`);
  const instantiate = await loadGlue(prepared.gluePath);
  const host = hostV01();
  const hostImport = { 'ambit:filter/host': host, 'ambit:filter/host@0.1.0': host };
  const handlers: HandlerV01[] = [];
  const members: V8Chain['members'] = [];
  for (let i = 0; i < length; i++) {
    const name = `${artifact.name}-${i + 1}`;
    const exports = instantiate((file) => modules[file]!, hostImport, (m, imports) => new WebAssembly.Instance(m, imports));
    const h = (exports.handler ?? exports['ambit:filter/handler@0.1.0']) as HandlerV01;
    const r = h.configure(JSON.stringify(validateConfig(artifact.schema, memberConfig(i), name)));
    if (r.tag === 'invalid') throw new AmbitError('AMBIT_ERR_CONFIG_REJECTED', `${name} (0.1) rejected the bench config: ${r.val}`);
    const phases = new Set(Object.entries(r.val.phases).filter(([, on]) => on).map(([p]) => p as PhaseName));
    members.push({ name, phases, failurePolicy: 'fail-closed' });
    handlers.push(h);
  }
  return {
    members,
    call: (i, input) => {
      if (input.phase !== 'requestHeaders') throw new Error('the 0.1 chain is measured on the request phase only');
      return handlers[i]!.onRequestHeaders(input.ctx, input.request);
    },
  };
}
