/**
 * What HBONE asks of TLS: 1.3 only, ALPN `h2`, mutual authentication against a trust
 * bundle. Certificates come in as PEM material (`TlsMaterial`) from an identity store;
 * the secure contexts are built here so no caller can weaken these settings.
 */
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/** One identity's credentials, as PEM. */
export interface TlsMaterial {
  /** The private key (never logged; only hashed into a cache key). */
  key: string | Buffer;
  /** The leaf certificate followed by any intermediates. */
  cert: string | Buffer;
  /** The trust bundle the peer's chain is verified against. */
  ca: string | Buffer | Array<string | Buffer>;
}

export const HBONE_ALPN = 'h2';
/** The only protocol HBONE speaks: older versions are refused in the handshake. */
export const HBONE_TLS_VERSION = 'TLSv1.3';
/** The default HBONE inbound port. */
export const HBONE_PORT = 15008;

/** The TLS facts of an established connection. */
export interface TlsFacts {
  /** `TLSv1.3`. */
  version: string;
  /** The IANA name, e.g. `TLS_AES_256_GCM_SHA384`. */
  cipher: string;
  /** The server name the client asked for (SNI), when it sent one. */
  sni?: string;
}

export function tlsFacts(socket: TLSSocket): TlsFacts {
  const cipher = socket.getCipher();
  const facts: TlsFacts = { version: socket.getProtocol() ?? 'unknown', cipher: cipher?.standardName ?? cipher?.name ?? 'unknown' };
  // `servername` is the SNI on the server side, and what was asked for on the client side.
  const sni = (socket as TLSSocket & { servername?: string | false }).servername;
  if (typeof sni === 'string' && sni !== '') facts.sni = sni;
  return facts;
}

function pemParts(v: string | Buffer | Array<string | Buffer>): Array<string | Buffer> {
  return Array.isArray(v) ? v : [v];
}

/**
 * A stable digest of the material, used to cache what is built from it. The key goes
 * into the hash only; the digest reveals nothing about it.
 */
export function materialDigest(m: TlsMaterial): string {
  const h = createHash('sha256');
  for (const part of [m.cert, ...pemParts(m.ca), m.key]) {
    h.update(part);
    h.update('\0');
  }
  return h.digest('hex');
}

/** A remote or local `address:port` as log text. */
export function endpointText(address: string | undefined, port: number | undefined): string {
  if (!address) return 'unknown';
  return address.includes(':') ? `[${address}]:${port ?? 0}` : `${address}:${port ?? 0}`;
}
