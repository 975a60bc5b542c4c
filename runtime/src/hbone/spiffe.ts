/**
 * The SPIFFE view the tunnel needs, over `identity/spiffe.ts` (the one SPIFFE parser):
 * results instead of exceptions, and the workload's namespace and service account
 * picked out when the path has the Kubernetes form.
 */
import type { X509Certificate } from 'node:crypto';
import * as spiffe from '../identity/spiffe.js';

export interface SpiffeId {
  /** The whole ID, as it appears in the certificate. */
  id: string;
  trustDomain: string;
  /** The path, with its leading `/` (`''` for the trust domain's own ID). */
  path: string;
  /** Set when the path is `/ns/<namespace>/sa/<service-account>` (the Kubernetes convention). */
  namespace?: string;
  serviceAccount?: string;
}

/** The standard's limit on the whole ID. */
export const MAX_SPIFFE_ID_LENGTH = spiffe.MAX_SPIFFE_ID_BYTES;

function view(p: spiffe.SpiffeId): SpiffeId {
  const id: SpiffeId = { id: p.uri, trustDomain: p.trustDomain, path: p.path };
  const s = p.segments;
  if (s.length === 4 && s[0] === 'ns' && s[2] === 'sa') {
    id.namespace = s[1];
    id.serviceAccount = s[3];
  }
  return id;
}

/** Parses a SPIFFE ID; `undefined` when `s` is not a valid one. */
export function parseSpiffeId(s: string): SpiffeId | undefined {
  return spiffe.isSpiffeId(s) ? view(spiffe.parseSpiffeId(s)) : undefined;
}

/** A predicate for `HboneClient.open({ expectServer })`: any of these exact IDs. */
export function expectSpiffeId(...ids: string[]): (spiffeId: string) => boolean {
  const set = new Set(ids);
  return (id) => set.has(id);
}

/** A predicate for `HboneClient.open({ expectServer })`: any valid ID in one of these trust domains. */
export function expectTrustDomain(...trustDomains: string[]): (spiffeId: string) => boolean {
  const set = new Set(trustDomains);
  return (id) => {
    const parsed = parseSpiffeId(id);
    return parsed !== undefined && set.has(parsed.trustDomain);
  };
}

export type SubjectAltName = spiffe.SubjectAltNameEntry;

/** Node's `subjectAltName` string split into entries; `undefined` when malformed. */
export function parseSubjectAltNames(san: string | undefined): SubjectAltName[] | undefined {
  try {
    return spiffe.parseSubjectAltName(san);
  } catch {
    return undefined;
  }
}

export type SvidResult = { ok: true; spiffe: SpiffeId } | { ok: false; reason: string };

/** The SPIFFE ID of an X.509 SVID (exactly one URI SAN, a valid SPIFFE ID); the reason says which rule failed. */
export function spiffeIdOfCertificate(cert: X509Certificate | undefined): SvidResult {
  if (!cert) return { ok: false, reason: 'no certificate was presented' };
  try {
    return { ok: true, spiffe: view(spiffe.spiffeIdFromCertificate(cert)) };
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) };
  }
}
