/** Builds a real component of a world that is not ambit:filter. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { componentize } from 'componentize-qjs';

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
