import { SourceMap, type SourceMapPayload } from 'node:module';

/** The custom section where `ambit-filter build` stores the bundle's source map. */
export const SOURCE_MAP_SECTION = 'ambit:source-map';
/** The bundle's name in a filter's stack traces. */
export const BUNDLE_NAME = 'filter.js';

function readLeb(bytes: Uint8Array, at: number): [value: number, next: number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    if (b === undefined) throw new RangeError('truncated LEB128');
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, at];
    shift += 7;
  }
}

/**
 * The source map a filter was built with, from the top-level custom section of its
 * component; undefined when it has none (a filter built elsewhere) or it is unreadable.
 */
export function readSourceMap(wasm: Uint8Array): SourceMapPayload | undefined {
  try {
    let at = 8; // magic and version
    while (at < wasm.length) {
      const id = wasm[at++];
      const [size, body] = readLeb(wasm, at);
      at = body + size;
      if (id !== 0) continue;
      const [nameLen, nameAt] = readLeb(wasm, body);
      const name = Buffer.from(wasm.subarray(nameAt, nameAt + nameLen)).toString('utf8');
      if (name !== SOURCE_MAP_SECTION) continue;
      return JSON.parse(Buffer.from(wasm.subarray(nameAt + nameLen, at)).toString('utf8')) as SourceMapPayload;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * Rewrites every `filter.js:LINE:COL` in a filter's error (its stack) to the position in
 * the filter's TypeScript source, e.g. `src/filter.ts:12:7`. Positions the map does not
 * cover are left as they are.
 */
export function mapFilterStack(message: string, map: SourceMapPayload | undefined): string {
  if (!map || !message.includes(`${BUNDLE_NAME}:`)) return message;
  const sm = new SourceMap(map);
  return message.replace(/\bfilter\.js:(\d+):(\d+)/g, (whole, l: string, c: string) => {
    const e = sm.findEntry(Number(l) - 1, Math.max(0, Number(c) - 1)) as { originalSource?: string; originalLine?: number; originalColumn?: number };
    if (!e || e.originalSource === undefined || e.originalLine === undefined) return whole;
    return `${e.originalSource}:${e.originalLine + 1}:${(e.originalColumn ?? 0) + 1}`;
  });
}
