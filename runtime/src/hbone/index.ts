/** HBONE: HTTP/2 CONNECT tunnels over mutual TLS 1.3 between node proxies. */
export { HboneServer, REASON_HEADER, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_SERVER_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_STREAM_WINDOW_BYTES, DEFAULT_SESSION_WINDOW_BYTES } from './server.js';
export type { HboneServerOptions, HboneServerEvent, HboneServerStats, ServerCredentialsProvider, ConnectionInfo, TunnelRequest, TunnelDecision } from './server.js';
export { HboneClient, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_CLIENT_IDLE_TIMEOUT_MS } from './client.js';
export type { HboneClientOptions, HboneClientStats, ClientCredentialsProvider, OpenOptions, HboneTunnel } from './client.js';
export { HboneError, type HboneErrorCode } from './errors.js';
export { parseAuthority, formatAuthority, isSocketAddress, type SocketAddress } from './authority.js';
export { parseSpiffeId, expectSpiffeId, expectTrustDomain, spiffeIdOfCertificate, parseSubjectAltNames, MAX_SPIFFE_ID_LENGTH, type SpiffeId, type SubjectAltName, type SvidResult } from './spiffe.js';
export { HBONE_ALPN, HBONE_PORT, HBONE_TLS_VERSION, materialDigest, tlsFacts, type TlsMaterial, type TlsFacts } from './tls.js';
export { connectTcp, DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS } from './connect.js';
export { pipeBothWays, type PipeResult, type PipeOptions } from './pipe.js';
