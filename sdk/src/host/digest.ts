/**
 * The filter digest: what a binding's `sha256` pin names. It covers the component and the
 * parts of its manifest that decide what the filter may do and what config it takes, so that
 * an installed package cannot widen its capabilities or loosen its schema under a pin.
 *
 * Definition (version 1): the lowercase hex sha256 of the UTF-8 text
 *
 *     ambit-filter-digest-v1\n
 *     wasm <lowercase hex sha256 of the component's bytes>\n
 *     capabilities <the declared capabilities, sorted, joined with ",">\n
 *     schema <lowercase hex sha256 of the schema's canonical JSON, or "none">\n
 *
 * Canonical JSON: no whitespace, object keys sorted by UTF-16 code units (JavaScript's default
 * sort), arrays in order, strings and numbers as `JSON.stringify` writes them. The capabilities
 * and schema are the effective ones (package.json's `ambit` field first, else the manifest).
 * A pin may be the hex digest or its `sha256-<base64>` form.
 */
import { createHash } from 'node:crypto';

export const DIGEST_VERSION = 'ambit-filter-digest-v1';

/** JSON with sorted object keys and no whitespace. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const sha256 = (text: string | Uint8Array): string => createHash('sha256').update(text).digest('hex');

/** The digest of a filter: its component's sha256 (hex), capabilities and config schema. */
export function filterDigest(parts: { sha256: string; capabilities: readonly string[]; schema: object | undefined }): string {
  return sha256([
    DIGEST_VERSION,
    `wasm ${parts.sha256.toLowerCase()}`,
    `capabilities ${[...parts.capabilities].sort().join(',')}`,
    `schema ${parts.schema ? sha256(canonicalJson(parts.schema)) : 'none'}`,
    '',
  ].join('\n'));
}
