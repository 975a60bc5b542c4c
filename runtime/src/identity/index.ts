/**
 * The identity layer: SPIFFE IDs, the mesh CA, the node's certificate store, peer
 * verification and mutual TLS primitives (TLS 1.3 only) for the HBONE tunnel.
 */
export * from './errors.js';
export * from './file-modes.js';
export * from './spiffe.js';
export * from './ca.js';
export * from './bundle.js';
export * from './store.js';
export * from './verify.js';
export * from './tls.js';
export { createCsr, readCsr, type CsrContents } from './csr.js';
export {
  buildCertificate, distinguishedName, emptyName, keyIdentifier, notAfter as certificateNotAfter,
  notBefore as certificateNotBefore, parseCertificates, certificatesPem, randomSerial, toPem,
  type CertificateSpec, type Extension,
} from './x509.js';
