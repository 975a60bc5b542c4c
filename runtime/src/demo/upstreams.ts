/**
 * The two demo services of the local mesh:
 * - catalog: answers JSON that shows the headers it received (so the filter's header
 *   is visible), including on /admin paths (which the filter's policy keeps away);
 * - reviews: flaky on purpose, failing two requests out of three with 503.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DemoServer {
  name: string;
  port: number;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function serve(name: string, host: string, port: number, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<DemoServer> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve({
      name,
      port: (server.address() as AddressInfo).port,
      close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    }));
  });
}

export function startCatalog(host: string, port: number): Promise<DemoServer> {
  return serve('catalog', host, port, (req, res) => {
    const seen = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-')));
    if (req.url?.startsWith('/admin')) return json(res, 200, { service: 'catalog', secret: 'the admin console', headers: seen });
    json(res, 200, { service: 'catalog', path: req.url, products: ['teapot', 'kettle', 'mug'], headers: seen });
  });
}

export function startReviews(host: string, port: number): Promise<DemoServer> {
  let n = 0;
  return serve('reviews', host, port, (req, res) => {
    n++;
    if (n % 3 !== 0) return json(res, 503, { service: 'reviews', error: `flaky on purpose (request ${n})` });
    json(res, 200, { service: 'reviews', path: req.url, reviews: [{ stars: 5, text: 'Steeps well.' }], request: n });
  });
}

/** `echo` (what `ambit-filter dev` puts behind the filter): answers JSON with the request as it arrived. */
export function startEcho(host: string, port: number): Promise<DemoServer> {
  return serve('echo', host, port, (req, res) => {
    json(res, 200, { service: 'echo', method: req.method, path: req.url, headers: req.headers });
  });
}
