/**
 * The native data path started in the test's process from a mesh config: the real Rust
 * listeners on loopback ports, the wasmtime engine (no filter compiled unless the config binds
 * one), records delivered to a recording telemetry.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  buildState, EndpointRegistry, loadMeshConfig, loadNative, NativeDataPath, resolveFilters, WasmtimeEngine,
} from '@ambit/runtime';
import { recordingTelemetry, type RecordingTelemetry } from './telemetry.js';

const native = loadNative();

/** Why the native data path cannot run here, or undefined when it can. */
export const nativePathSkip = native.ok && native.native.NativeProxy ? undefined : `the native data path is not built here (${native.ok ? 'no NativeProxy' : native.reason})`;

export interface NativeListener { name: string; target: { address: string; port: number }; direction?: 'inbound' | 'outbound' }

export interface RunningNativePath {
  /** The loopback port of each listener, by name. */
  ports: Record<string, number>;
  telemetry: RecordingTelemetry;
  close(): Promise<void>;
}

/** Starts the native data path for `yaml` (a whole mesh config) with one loopback listener per entry. */
export async function startNativePath(yaml: string, listeners: NativeListener[], threads = 2): Promise<RunningNativePath> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-native-'));
  const config = path.join(dir, 'mesh.yaml');
  await writeFile(config, yaml);
  const loaded = await loadMeshConfig(config);
  const resolved = await resolveFilters(loaded);
  const engine = new WasmtimeEngine({ threads: 1, cacheDir: false });
  const state = await buildState(loaded, resolved, engine, new EndpointRegistry(), 1);
  const telemetry = recordingTelemetry();
  const dataPath = new NativeDataPath({
    state, engine, telemetry, threads, recordsEveryMs: 20,
    listeners: listeners.map((l) => ({ name: l.name, direction: l.direction ?? 'outbound', address: '127.0.0.1', port: 0, target: l.target })),
  });
  await dataPath.start();
  const ports = Object.fromEntries(Object.entries(dataPath.addresses()).map(([name, a]) => [name, a.port]));
  return {
    ports,
    telemetry,
    close: async () => {
      await dataPath.close(500);
      await engine.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
