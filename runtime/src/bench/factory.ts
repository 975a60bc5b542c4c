/**
 * Turns a variant's load spec into a handler factory, in whichever thread or process
 * needs instances: compiled core modules plus jco glue for Wasm (as
 * `@ambit/filter-sdk/testing` does), the rewritten bundle for plain JS.
 */
import {
  AmbitError, BINDING_DEFAULTS, compileCore, createHostImports, instantiateHandler, loadGlue, validateConfig,
  PHASE_NAMES, type Capability, type Handler, type HostImports, type PhaseName, type PreparedComponent,
} from './deps.js';
import { loadPlainJsFactory, type HandlerFactory } from './plain-js.js';
import { memberConfig } from './inputs.js';

/** Serializable (it is sent to child processes). */
export type LoadSpec =
  | { kind: 'js'; factoryPath: string }
  | { kind: 'wasm'; prepared: PreparedComponent };

export interface LoadedFactory {
  create: HandlerFactory;
  /** Milliseconds spent compiling core modules (0 for plain JS). */
  compileMs: number;
}

export async function loadFactory(spec: LoadSpec, label: string): Promise<LoadedFactory> {
  if (spec.kind === 'js') return { create: await loadPlainJsFactory(spec.factoryPath), compileMs: 0 };
  const t0 = performance.now();
  const modules = await compileCore(spec.prepared, BINDING_DEFAULTS.memoryMaxPages, label);
  const compileMs = performance.now() - t0;
  const instantiate = await loadGlue(spec.prepared.gluePath);
  return { create: (host) => instantiateHandler(instantiate, modules, host, label), compileMs };
}

/** Host imports that drop log lines and counters (the measured path calls neither). */
export function quietHost(name: string, capabilities: readonly Capability[]): HostImports {
  return createHostImports(name, capabilities, { log: () => {}, counter: () => {} });
}

/** The i-th chain member's config, validated and defaulted as the engine's binding would be, as JSON. */
export function memberConfigJson(schema: object | undefined, i: number, name: string): string {
  return JSON.stringify(validateConfig(schema, memberConfig(i), name));
}

/** Configures a fresh instance; returns the phases it takes part in. */
export function configure(h: Handler, configJson: string, label: string): Set<PhaseName> {
  const r = h.configure(configJson);
  if (r.tag === 'invalid') throw new AmbitError('AMBIT_ERR_CONFIG_REJECTED', `${label} rejected the bench config: ${r.val}`);
  return new Set(PHASE_NAMES.filter((p) => r.val.phases[p]));
}
