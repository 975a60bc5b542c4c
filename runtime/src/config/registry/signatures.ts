/**
 * npm registry signatures: a registry that signs (`dist.signatures` in a version's
 * metadata) publishes its public keys at `<registry>/-/npm/v1/keys`. Each signature is
 * ECDSA P-256 / SHA-256 over `<name>@<version>:<integrity>`, with a key that was valid
 * when the version was published. This is what `npm audit signatures` checks.
 *
 * Not checked here: provenance attestations (`dist.attestations`, Sigstore bundles);
 * verifying them needs the Sigstore trust root, which a node proxy does not fetch.
 * The lock file records whether a version had one.
 */
import { createPublicKey, verify } from 'node:crypto';

export interface RegistryKey {
  keyid: string;
  keytype?: string;
  scheme?: string;
  /** SPKI DER, base64. */
  key: string;
  /** ISO time after which signatures made with it are not trusted; null: none. */
  expires?: string | null;
}

export interface DistSignature {
  keyid: string;
  /** DER ECDSA signature, base64. */
  sig: string;
}

export type SignatureCheck =
  | { status: 'verified'; keyid: string }
  | { status: 'unsigned' }
  | { status: 'invalid'; reason: string };

/**
 * Checks a version's signatures against the registry's keys: `verified` when one
 * signature verifies with a known key that had not expired at `publishedAt`.
 */
export function checkSignatures(
  spec: { name: string; version: string; integrity: string },
  signatures: readonly DistSignature[] | undefined,
  keys: readonly RegistryKey[] | undefined,
  publishedAt: string | undefined,
): SignatureCheck {
  if (!signatures || signatures.length === 0) return { status: 'unsigned' };
  if (!keys || keys.length === 0) {
    return { status: 'invalid', reason: 'the version is signed but the registry publishes no keys (/-/npm/v1/keys)' };
  }
  const message = Buffer.from(`${spec.name}@${spec.version}:${spec.integrity}`);
  const reasons: string[] = [];
  for (const s of signatures) {
    const key = keys.find((k) => k.keyid === s.keyid);
    if (!key) {
      reasons.push(`no registry key ${s.keyid}`);
      continue;
    }
    if (key.expires && publishedAt && Date.parse(key.expires) < Date.parse(publishedAt)) {
      reasons.push(`key ${s.keyid} expired ${key.expires}, before the version was published (${publishedAt})`);
      continue;
    }
    let ok = false;
    try {
      const publicKey = createPublicKey({ key: Buffer.from(key.key, 'base64'), format: 'der', type: 'spki' });
      ok = verify('sha256', message, publicKey, Buffer.from(s.sig, 'base64'));
    } catch (e) {
      reasons.push(`key ${s.keyid} is unusable (${e instanceof Error ? e.message : String(e)})`);
      continue;
    }
    if (ok) return { status: 'verified', keyid: s.keyid };
    reasons.push(`the signature by ${s.keyid} does not match ${message.toString()}`);
  }
  return { status: 'invalid', reason: reasons.join('; ') };
}
