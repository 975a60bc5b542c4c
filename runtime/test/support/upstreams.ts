/** Real upstream servers on loopback for data-path tests. */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';

export interface Upstream {
  port: number;
  /** Requests seen: method, path, headers (lower-case, raw pairs). */
  seen: Array<{ method: string; path: string; headers: Array<[string, string]>; body: string }>;
  close(): Promise<void>;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/**
 * HTTP/1.1 server answering JSON that echoes the request. Paths: `/status/<code>`
 * answers that code; `/flaky/<n>` answers 503 to the first n requests on that path, then 200;
 * `/reset` destroys the socket mid-response; `/slow/<ms>` waits before answering.
 */
export async function httpUpstream(name = 'up'): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const flaky = new Map<string, number>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const path = req.url ?? '/';
      seen.push({ method: req.method ?? '', path, headers: pairs(req.rawHeaders), body });
      const reply = (status: number) => {
        const out = JSON.stringify({ upstream: name, method: req.method, path, headers: req.headers, body });
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out), 'x-upstream': name });
        res.end(out);
      };
      let m: RegExpMatchArray | null;
      if ((m = path.match(/^\/status\/(\d+)/))) return reply(Number(m[1]));
      if ((m = path.match(/^\/flaky\/(\d+)/))) {
        const n = flaky.get(path) ?? 0;
        flaky.set(path, n + 1);
        return reply(n < Number(m[1]) ? 503 : 200);
      }
      if (path.startsWith('/reset')) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
        res.write('partial');
        setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      if ((m = path.match(/^\/slow\/(\d+)/))) { setTimeout(() => reply(200), Number(m[1])); return; }
      reply(200);
    });
  };
  const server = http.createServer(handler);
  const port = await listen(server);
  return { port, seen, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** HTTP/2 cleartext server echoing the request, with a trailer. */
export async function h2Upstream(name = 'h2up'): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    // A stream the proxy resets (its client went away) is not an upstream failure.
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const list: Array<[string, string]> = Object.entries(headers).filter(([k]) => !k.startsWith(':')).map(([k, v]) => [k, String(v)]);
      seen.push({ method: String(headers[':method']), path: String(headers[':path']), headers: list, body });
      if (stream.destroyed || stream.closed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-upstream': name }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'x-trailer': 'done' }));
      stream.end(JSON.stringify({ upstream: name, path: headers[':path'], body }));
    });
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)); });
  const port = await listen(server);
  return { port, seen, close: () => new Promise((r) => { for (const s of sessions) s.destroy(); server.close(() => r()); }) };
}

/** A TCP server speaking a line protocol: answers `pong:<line>` to each line; `bye` closes. */
export async function lineUpstream(): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        seen.push({ method: 'LINE', path: line, headers: [], body: '' });
        if (line === 'bye') { s.end('pong:bye\n'); return; }
        s.write(`pong:${line}\n`);
      }
    });
    s.on('error', () => {});
  });
  const port = await listen(server);
  return { port, seen, close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }) };
}

/** A loopback TCP port that was free a moment ago (the benchmarks' helper). */
export { freePort } from '../../src/bench/proxy/index.js';
