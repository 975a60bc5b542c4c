/**
 * A real component of the previous filter world (`ambit:filter@0.1.0`), built the way
 * the 0.1 SDK built filters (componentize-qjs from the 0.1 WIT, kept as a fixture).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from 'componentize-qjs';

const WIT_01 = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/wit-0.1');

export async function oldWorldComponent(): Promise<Uint8Array> {
  const { component } = await componentize({
    witPath: WIT_01,
    world: 'filter',
    jsSource: [
      "export const handler = {",
      "  configure() { return { tag: 'ok', val: { name: 'old', phases: { connection: false, requestHeaders: true, responseHeaders: false, requestBody: false, responseBody: false } } }; },",
      "  onConnection() { return { tag: 'allow' }; },",
      "  onRequestHeaders() { return { tag: 'proceed', val: [] }; },",
      "  onResponseHeaders() { return { tag: 'proceed', val: [] }; },",
      "};",
    ].join('\n'),
    sync: true,
    stubWasi: true,
  });
  return new Uint8Array(component);
}
