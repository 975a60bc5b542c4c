/**
 * PKCS#10 certificate signing requests (RFC 2986) for workload identities: a node proxy
 * makes the key pair and sends only the request (its public key and the SPIFFE ID as a URI
 * SAN in an extensionRequest, signed by the private key as proof of possession); the
 * controller checks the signature and who may hold that identity, and signs a certificate.
 *
 * Built and read with node-forge's ASN.1 layer (its `pki` layer knows only RSA), signed and
 * verified with `node:crypto`, like the certificates in ./x509.ts.
 */
import { createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { IdentityError } from './errors.js';
import { bin, buf, der, emptyName, fromDer, OID, oid, seq, signatureAlgorithm, subjectAltNameUris, toPem } from './x509.js';

const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const U = asn1.Class.UNIVERSAL;
const CTX = asn1.Class.CONTEXT_SPECIFIC;
const T = asn1.Type;

/** PKCS#9 extensionRequest. */
const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

const HASH_OF_SIGNATURE: Record<string, string | null> = {
  [OID.ecdsaWithSha256]: 'sha256',
  [OID.ecdsaWithSha384]: 'sha384',
  [OID.ecdsaWithSha512]: 'sha512',
  [OID.sha256WithRsa]: 'sha256',
  [OID.ed25519]: null,
};

/** A PEM `CERTIFICATE REQUEST` for `identity` (a SPIFFE ID), signed with `privateKey`. */
export function createCsr(identity: string, keys: { privateKey: KeyObject; publicKey: KeyObject }): string {
  const alg = signatureAlgorithm(keys.privateKey);
  const san = subjectAltNameUris([identity], true);
  const extensions = seq([seq([oid(san.oid), asn1.create(U, T.BOOLEAN, false, '\xff'), asn1.create(U, T.OCTETSTRING, false, bin(der(san.value)))])]);
  const info = seq([
    asn1.create(U, T.INTEGER, false, '\x00'),
    emptyName(),
    fromDer(keys.publicKey.export({ type: 'spki', format: 'der' })),
    asn1.create(CTX, 0, true, [seq([oid(EXTENSION_REQUEST), asn1.create(U, T.SET, true, [extensions])])]),
  ]);
  const infoDer = der(info);
  const signature = sign(alg.hash, infoDer, keys.privateKey);
  return toPem(der(seq([fromDer(infoDer), alg.identifier, asn1.create(U, T.BITSTRING, false, `\x00${bin(signature)}`)])), 'CERTIFICATE REQUEST');
}

/** What a verified request asks for. */
export interface CsrContents {
  readonly publicKey: KeyObject;
  /** The URI SANs (a workload request carries exactly one SPIFFE ID). */
  readonly uris: readonly string[];
}

/**
 * Parses a PEM request and verifies its signature with the key it carries.
 * Throws IdentityError `issue-failed` saying what is wrong.
 */
export function readCsr(pem: string): CsrContents {
  const m = /-----BEGIN CERTIFICATE REQUEST-----([\s\S]+?)-----END CERTIFICATE REQUEST-----/.exec(pem);
  if (!m) throw new IdentityError('issue-failed', 'the certificate request is not a PEM CERTIFICATE REQUEST');
  try {
    const root = fromDer(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')).value as Asn1[];
    const [info, alg, sig] = root;
    if (!info || !alg || !sig) throw new Error('expected CertificationRequest ::= SEQUENCE { info, algorithm, signature }');
    const fields = info.value as Asn1[];
    const spkiDer = der(fields[2]!);
    const publicKey = createPublicKey({ key: spkiDer, format: 'der', type: 'spki' });
    const algOid = asn1.derToOid((alg.value as Asn1[])[0]!.value as string);
    const hash = HASH_OF_SIGNATURE[algOid];
    if (hash === undefined) throw new Error(`unsupported signature algorithm ${algOid}`);
    const signature = buf(sig.value as string).subarray(1);
    if (!verify(hash, der(info), publicKey, signature)) {
      throw new IdentityError('issue-failed', 'the certificate request\'s signature does not verify with its own key (corrupted, or not made with that key)');
    }
    return { publicKey, uris: requestedUris(fields[3]) };
  } catch (e) {
    if (e instanceof IdentityError) throw e;
    throw new IdentityError('issue-failed', `the certificate request cannot be read: ${(e as Error).message}`, { cause: e });
  }
}

function requestedUris(attributes: Asn1 | undefined): string[] {
  const uris: string[] = [];
  for (const attr of (attributes?.value as Asn1[] | undefined) ?? []) {
    const [type, values] = attr.value as Asn1[];
    if (asn1.derToOid(type!.value as string) !== EXTENSION_REQUEST) continue;
    for (const exts of values!.value as Asn1[]) {
      for (const ext of exts.value as Asn1[]) {
        const parts = ext.value as Asn1[];
        if (asn1.derToOid(parts[0]!.value as string) !== OID.subjectAltName) continue;
        const names = fromDer(buf(parts[parts.length - 1]!.value as string)).value as Asn1[];
        for (const n of names) if (n.tagClass === CTX && n.type === 6) uris.push(n.value as string);
      }
    }
  }
  return uris;
}
