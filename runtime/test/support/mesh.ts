/** Helpers for the mTLS mesh tests: HTTP from a given source address, an echo workload, log capture. */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Telemetry } from '@ambit/runtime';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on a fresh connection from `localAddress` (a workload's address). */
export function requestFrom(localAddress: string, port: number, path: string, options: { host?: string; method?: string; body?: string; agent?: http.Agent; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: options.host ?? '127.0.0.1', port, path, method: options.method ?? 'GET', localAddress,
      agent: options.agent ?? false, headers: { ...options.headers, ...(options.body ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}) },
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`request to ${port}${path} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

export interface EchoWorkload {
  port: number;
  close(): Promise<void>;
}

type EchoRequest = http.IncomingMessage | http2.Http2ServerRequest;
type EchoResponse = http.ServerResponse | http2.Http2ServerResponse;

/** Answers JSON with the request's HTTP version, method, path, headers and body. */
function echo(name: string) {
  return (req: EchoRequest, res: EchoResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const out = JSON.stringify({ workload: name, httpVersion: req.httpVersion, method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(out)) });
      res.end(out);
    });
  };
}

async function listenOn(server: http.Server | http2.Http2Server, address: string, closeAll: () => void): Promise<EchoWorkload> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, address, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => {
      closeAll();
      server.close(() => resolve());
    }),
  };
}

/**
 * An HTTP/1.1 server on `address` that echoes each request as JSON; an `Upgrade` request
 * is answered `101` with `x-peer-identity` echoed, then every byte is sent back.
 */
export function echoWorkload(address: string, name: string): Promise<EchoWorkload> {
  const server = http.createServer(echo(name));
  const upgraded = new Set<import('node:net').Socket>();
  server.on('upgrade', (req: http.IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${req.headers.upgrade ?? ''}\r\nx-peer-identity: ${String(req.headers['x-peer-identity'] ?? 'none')}\r\n\r\n`);
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });
  return listenOn(server, address, () => {
    server.closeAllConnections();
    for (const s of upgraded) s.destroy();
  });
}

/** The same over HTTP/2 cleartext (prior knowledge). */
export function echoWorkloadH2(address: string, name: string): Promise<EchoWorkload> {
  const server = http2.createServer(echo(name));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.once('close', () => sessions.delete(s)); });
  return listenOn(server, address, () => { for (const s of sessions) s.destroy(); });
}

/** Keeps the operational messages a running node logs (still passing them on). */
export function captureLogs(t: Telemetry): Array<{ level: string; msg: string }> {
  const seen: Array<{ level: string; msg: string }> = [];
  for (const level of ['info', 'warn', 'error'] as const) {
    const original = t[level].bind(t);
    t[level] = (msg: string, fields?: Record<string, unknown>) => {
      seen.push({ level, msg });
      original(msg, fields);
    };
  }
  return seen;
}
