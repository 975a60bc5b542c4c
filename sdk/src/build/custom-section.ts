/** Appends a custom section to a component (or module): allowed anywhere, read by no engine. */
export function withCustomSection(wasm: Uint8Array, name: string, payload: Uint8Array): Uint8Array {
  const nameBytes = Buffer.from(name);
  const body = Buffer.concat([leb128(nameBytes.length), nameBytes, payload]);
  return Buffer.concat([wasm, Buffer.from([0]), leb128(body.length), body]);
}

function leb128(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return Buffer.from(out);
}
