/**
 * Subresource Integrity strings as npm writes them (`dist.integrity`: `sha512-<base64>`,
 * possibly several space-separated hashes): parse, compute, compare. The strongest
 * algorithm present is the one checked, as npm's ssri does.
 */
import { createHash } from 'node:crypto';

const STRENGTH = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
type Algorithm = (typeof STRENGTH)[number];

export interface Sri {
  algorithm: Algorithm;
  digest: string;
}

/** The strongest hash of an SRI string, or undefined when it holds none we know. */
export function parseIntegrity(value: string): Sri | undefined {
  let best: Sri | undefined;
  for (const part of value.trim().split(/\s+/)) {
    const m = /^(sha1|sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})(\?.*)?$/.exec(part);
    if (!m) continue;
    const algorithm = m[1] as Algorithm;
    if (!best || STRENGTH.indexOf(algorithm) > STRENGTH.indexOf(best.algorithm)) best = { algorithm, digest: m[2]! };
  }
  return best;
}

export function integrityOf(data: Uint8Array, algorithm: Algorithm = 'sha512'): string {
  return `${algorithm}-${createHash(algorithm).update(data).digest('base64')}`;
}

/**
 * Checks `data` against `expected`; returns undefined when it matches, else why not.
 * sha1 alone (old npm packages) is refused: it is not collision-resistant.
 */
export function checkIntegrity(data: Uint8Array, expected: string): string | undefined {
  const sri = parseIntegrity(expected);
  if (!sri) return `${JSON.stringify(expected)} is not an integrity string (sha512-<base64>)`;
  if (sri.algorithm === 'sha1') return `the registry offers only a sha1 integrity (${expected}), too weak to trust; republish the package with a current npm`;
  const actual = integrityOf(data, sri.algorithm);
  return actual === `${sri.algorithm}-${sri.digest}` ? undefined : `its content has ${actual}, expected ${sri.algorithm}-${sri.digest}`;
}
