/**
 * Picks the filter engine a node's config asks for (`proxy.engine`):
 * - `wasmtime`: the native engine, or a coded error saying why it cannot load;
 * - `v8`: Node's own WebAssembly in worker threads;
 * - `auto` (default): wasmtime where the native addon loads, else v8, with one log
 *   line saying why it stepped down.
 */
import { AmbitError, type LogLevel } from '../deps.js';
import type { FilterEngine } from './engine.js';
import { V8Engine } from './v8/engine.js';
import { WasmtimeEngine, type WasmtimeEngineOptions } from './wasmtime/engine.js';
import { loadNative } from './wasmtime/native.js';

export type EngineChoice = 'v8' | 'wasmtime' | 'auto';

export interface ChooseEngineOptions {
  /** V8 worker threads. Default 2. */
  v8Threads?: number;
  wasmtime?: Omit<WasmtimeEngineOptions, 'onLog' | 'onCounter'>;
  onLog?: (filter: string, level: LogLevel, message: string) => void;
  onCounter?: (filter: string, name: string, delta: number) => void;
  /** Where the one-line reason for the engine picked goes. */
  say?: (line: string) => void;
}

export function chooseEngine(choice: EngineChoice, options: ChooseEngineOptions = {}): FilterEngine {
  const sinks = { onLog: options.onLog, onCounter: options.onCounter };
  const v8 = () => new V8Engine({ workers: options.v8Threads ?? 2, ...sinks, say: options.say });
  if (choice === 'v8') return v8();
  const native = loadNative();
  if (!native.ok) {
    if (choice === 'wasmtime') {
      throw new AmbitError(
        'AMBIT_ERR_ENGINE_UNAVAILABLE',
        `proxy.engine is wasmtime but the native engine cannot load: ${native.reason}. Build it (\`npm run build\` with cargo installed) or set proxy.engine to auto or v8`,
      );
    }
    options.say?.(`filter engine: v8 (engine: auto; wasmtime unavailable: ${native.reason}; install cargo and run \`npm run build\` to build it)`);
    return v8();
  }
  const engine = new WasmtimeEngine({ ...options.wasmtime, ...sinks });
  options.say?.(`filter engine: wasmtime ${native.native.wasmtimeVersion()} (engine: ${choice})`);
  return engine;
}
