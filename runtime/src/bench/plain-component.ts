/**
 * Runs the plain-JS baseline through the real V8 engine (same workers, same
 * postMessage protocol, same chain executor), so "engine" rows compare like with
 * like.
 *
 * The engine takes component bytes and asks `prepareComponent` for transpiled glue,
 * which is cached on disk by the bytes' sha256. The bench writes such a cache entry
 * itself: a stand-in "component" (just the component header plus a tag) whose glue
 * `instantiate()` returns the plain-JS handler instead of instantiating Wasm. Only
 * the bench's own cache folder is used.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { HOST_INTERFACE } from './deps.js';
import type { PlainJsModule } from './plain-js.js';

export interface StandInComponent {
  wasm: Uint8Array;
  sha256: string;
}

const COMPONENT_HEADER = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/**
 * `transpiledDir` is where `prepareComponent` put a real component in the same cache
 * (`<cacheDir>/<transpiler tag>/<sha256>`): the stand-in goes next to it.
 */
export async function writeStandInComponent(plain: PlainJsModule, transpiledDir: string): Promise<StandInComponent> {
  const wasm = Uint8Array.from([...COMPONENT_HEADER, ...Buffer.from(`ambit-bench plain-js ${plain.sha256}`)]);
  const sha256 = createHash('sha256').update(wasm).digest('hex');
  const dir = path.join(path.dirname(transpiledDir), sha256);
  await mkdir(dir, { recursive: true });
  const glue = [
    `import { createHandler } from ${JSON.stringify(pathToFileURL(plain.path).href)};`,
    'export function instantiate(_getCoreModule, imports) {',
    `  const host = imports[${JSON.stringify(HOST_INTERFACE)}] ?? imports[${JSON.stringify(`${HOST_INTERFACE}@0.1.0`)}];`,
    '  return { handler: createHandler(host) };',
    '}',
    '',
  ].join('\n');
  await writeFile(path.join(dir, 'component.js'), glue);
  await writeFile(path.join(dir, 'package.json'), '{"type":"module"}\n');
  await writeFile(path.join(dir, 'prepared.json'), JSON.stringify({ sha256, coreFiles: [] }));
  return { wasm, sha256 };
}
