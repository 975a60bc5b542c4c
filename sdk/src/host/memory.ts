import { AmbitError } from './errors.js';

/** WebAssembly pages are 64 KiB. */
export const PAGE_BYTES = 65536;

function readU32(b: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = b[pos++];
    if (byte === undefined) throw new Error('truncated LEB128');
    result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 35) throw new Error('LEB128 too long');
  }
}

function writeU32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/**
 * Returns a copy of a core WebAssembly module whose defined memories may grow to at
 * most `maxPages`. A guest that allocates past it sees `memory.grow` fail, which
 * traps its instance and nothing else. Imported memories are left alone: their
 * maximum is that of the memory they import. Modules without a memory section are
 * returned unchanged.
 */
export function capMemory(module: Uint8Array, maxPages: number, label = 'module'): Uint8Array {
  if (!Number.isInteger(maxPages) || maxPages < 1 || maxPages > 65536) {
    throw new AmbitError('AMBIT_ERR_MEMORY_CAP', `memory cap must be 1..65536 pages (64 KiB each), got ${maxPages}`);
  }
  let pos = 8;
  while (pos < module.length) {
    const id = module[pos]!;
    const [size, bodyStart] = readU32(module, pos + 1);
    const bodyEnd = bodyStart + size;
    if (id === 5) return rewriteMemorySection(module, pos, bodyStart, bodyEnd, maxPages, label);
    pos = bodyEnd;
  }
  return module;
}

function rewriteMemorySection(
  module: Uint8Array, sectionStart: number, bodyStart: number, bodyEnd: number, maxPages: number, label: string,
): Uint8Array {
  let [count, p] = readU32(module, bodyStart);
  const body: number[] = writeU32(count);
  while (count-- > 0) {
    const flags = module[p++]!;
    if (flags & 0x04) {
      throw new AmbitError('AMBIT_ERR_MEMORY_CAP', `${label}: 64-bit memories are not supported by the memory cap`);
    }
    let min: number;
    [min, p] = readU32(module, p);
    let max: number | undefined;
    if (flags & 0x01) [max, p] = readU32(module, p);
    if (min > maxPages) {
      throw new AmbitError(
        'AMBIT_ERR_MEMORY_CAP',
        `${label}: the filter starts with ${min} pages (${(min * PAGE_BYTES) / 2 ** 20} MiB) of memory, above the cap of ${maxPages} pages; raise the binding's memory cap`,
      );
    }
    const cap = max === undefined ? maxPages : Math.min(max, maxPages);
    body.push((flags | 0x01) & 0xff, ...writeU32(min), ...writeU32(cap));
  }
  const newBody = Uint8Array.from(body);
  const header = Uint8Array.from([5, ...writeU32(newBody.length)]);
  const out = new Uint8Array(sectionStart + header.length + newBody.length + (module.length - bodyEnd));
  out.set(module.subarray(0, sectionStart), 0);
  out.set(header, sectionStart);
  out.set(newBody, sectionStart + header.length);
  out.set(module.subarray(bodyEnd), sectionStart + header.length + newBody.length);
  return out;
}
