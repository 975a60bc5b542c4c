/**
 * A test-side HBONE peer on node:tls and node:http2, to speak to a node proxy's HBONE listener
 * as a ztunnel (or a misbehaving client) would, and to stand in for another node's listener:
 *
 * - `openTunnel`: TLS 1.3 with a given certificate, ALPN h2, then one request (CONNECT by
 *   default) to `authority`; resolves with the answer's status and headers, and the stream when
 *   it was a 200; rejects when the handshake fails, with the TLS error;
 * - `rogueHboneServer`: a listener that presents a given certificate and answers every CONNECT
 *   200, counting what it was asked (an impostor a node must refuse before it sends anything).
 */
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

/** Key, certificate chain and trust anchors, PEM. */
export interface TlsMaterial {
  key: string;
  cert: string;
  ca: string;
}

/** PEM material of a certificate issued by the test's `CertificateAuthority`. */
export function materialOf(cert: { privateKey: import('node:crypto').KeyObject; certChainPem: string }, caPem: string): TlsMaterial {
  return { key: cert.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert.certChainPem, ca: caPem };
}

export interface TunnelAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  /** The tunnel's bytes, when the status is 200. */
  stream?: Duplex;
  /** The SPIFFE URI SAN the server presented. */
  serverIdentity: string | undefined;
  close(): void;
}

export interface OpenTunnel {
  material: TlsMaterial;
  /** Where the TCP connection goes: `<workload ip>:<hbone port>`. */
  dial: { address: string; port: number };
  /** The CONNECT target, `ip:port`. */
  authority: string;
  method?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export function openTunnel(o: OpenTunnel): Promise<TunnelAnswer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer from ${o.dial.address}:${o.dial.port} within ${o.timeoutMs ?? 5_000} ms`)); }, o.timeoutMs ?? 5_000);
    const fail = (e: Error) => { clearTimeout(timer); socket.destroy(); reject(e); };
    const socket = tls.connect({
      host: o.dial.address, port: o.dial.port, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3',
      key: o.material.key, cert: o.material.cert, ca: o.material.ca, checkServerIdentity: () => undefined,
    });
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      const san = socket.getPeerX509Certificate()?.subjectAltName ?? '';
      const serverIdentity = /URI:(spiffe:\/\/[^,\s]+)/.exec(san)?.[1];
      const session = http2.connect(`http://${o.authority}`, { createConnection: () => socket });
      session.once('error', fail);
      const method = o.method ?? 'CONNECT';
      const stream = session.request({ ':method': method, ':authority': o.authority, ...(method === 'CONNECT' ? {} : { ':path': '/', ':scheme': 'https' }), ...o.headers }, { endStream: false });
      stream.once('error', fail);
      stream.once('response', (headers) => {
        clearTimeout(timer);
        const status = Number(headers[':status']);
        const close = () => { stream.destroy(); session.destroy(); };
        resolve({ status, headers, serverIdentity, close, ...(status === 200 ? { stream } : {}) });
        if (status !== 200) stream.resume();
      });
    });
  });
}

export interface RogueServer {
  address: AddressInfo;
  /** CONNECTs it was asked for. */
  tunnels: number;
  close(): Promise<void>;
}

export async function rogueHboneServer(material: TlsMaterial, host: string): Promise<RogueServer> {
  const server = http2.createSecureServer({ key: material.key, cert: material.cert, ca: material.ca, requestCert: true, rejectUnauthorized: false, allowHTTP1: false, minVersion: 'TLSv1.3' });
  const rogue = { tunnels: 0 } as RogueServer;
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.once('close', () => sessions.delete(s)); });
  server.on('stream', (stream) => {
    rogue.tunnels++;
    stream.respond({ ':status': 200 });
    stream.on('data', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, () => resolve()));
  rogue.address = server.address() as AddressInfo;
  rogue.close = () => new Promise<void>((resolve) => {
    server.close(() => resolve());
    for (const s of sessions) s.destroy();
  });
  return rogue;
}
