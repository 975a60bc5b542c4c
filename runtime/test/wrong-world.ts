/** Real components of worlds this node does not run: another world, and the previous ambit:filter. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from 'componentize-qjs';

/** Builds a real component of a world that is not ambit:filter. */
export async function wrongWorldComponent(): Promise<Uint8Array> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-wrong-world-'));
  await writeFile(path.join(dir, 'greeter.wit'), 'package test:greeter;\nworld greeter {\n  export greet: func(name: string) -> string;\n}\n');
  const { component } = await componentize({
    witPath: path.join(dir, 'greeter.wit'),
    jsSource: 'export function greet(name) { return `hello ${name}`; }',
    sync: true,
    stubWasi: true,
  });
  return new Uint8Array(component);
}

/** The 0.1 world, as it was released: components built for it must be refused with the SDK to rebuild with. */
const OLD_WIT_DIR = fileURLToPath(new URL('./fixtures/ambit-filter-0.1/', import.meta.url));

/** Builds a real component of `ambit:filter@0.1.0` (what `ambit-filter build` of SDK 0.1 made). */
export async function oldWorldComponent(): Promise<Uint8Array> {
  const { component } = await componentize({
    witPath: OLD_WIT_DIR,
    world: 'filter',
    jsSource: [
      'export const handler = {',
      "  configure() { return { tag: 'ok', val: { name: 'old', phases: { requestHeaders: true } } }; },",
      "  onConnection() { return { tag: 'allow' }; },",
      "  onRequestHeaders() { return { tag: 'proceed', val: [] }; },",
      "  onResponseHeaders() { return { tag: 'proceed', val: [] }; },",
      '};',
    ].join('\n'),
    sync: true,
    stubWasi: true,
  });
  return new Uint8Array(component);
}
