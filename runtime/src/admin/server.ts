/**
 * The admin HTTP server (like Envoy's admin interface on :15000): health, readiness,
 * the effective configuration and Prometheus metrics. It listens on loopback unless
 * told otherwise: it has no authentication.
 *
 *   GET /                  the endpoints, as text
 *   GET /healthz           200 "ok" while the process runs (liveness)
 *   GET /ready             200 when the proxy is ready, else 503 with the reason
 *   GET /config_dump       the effective configuration as JSON
 *   GET /stats/prometheus  metrics, Prometheus text format
 *
 * HEAD is answered like GET without a body; other methods get 405, other paths 404.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export const DEFAULT_ADMIN_ADDRESS = '127.0.0.1';
export const DEFAULT_ADMIN_PORT = 15000;

export interface MetricsText {
  contentType: string;
  body: string;
}

export interface AdminOptions {
  /** Default 127.0.0.1. */
  address?: string;
  /** Default 15000; 0 picks a free port (see `address()`). */
  port?: number;
  ready: () => { ready: boolean; reason?: string };
  /**
   * The effective configuration: bindings with filter sha256s, listeners, services.
   * Serialized defensively as well: fields named like keys, secrets, passwords or
   * tokens, PEM private keys and byte arrays (filter components) are replaced.
   */
  configDump: () => unknown;
  /** See `registryMetrics` (one process) and `clusterMetrics` (`./cluster.js`). */
  metrics: () => Promise<MetricsText>;
}

export interface AdminServer {
  /** Stops listening; resolves once open connections are done (cut after 2 s). */
  close(): Promise<void>;
  address(): AddressInfo;
}

const ENDPOINTS: ReadonlyArray<[string, string]> = [
  ['/', 'this list'],
  ['/healthz', 'liveness: 200 while the process runs'],
  ['/ready', 'readiness: 200 when ready, else 503 with the reason'],
  ['/config_dump', 'the effective configuration (JSON)'],
  ['/stats/prometheus', 'metrics in the Prometheus text format'],
];

/** The metrics provider for a single process: one registry's text. */
export function registryMetrics(registry: Registry): () => Promise<MetricsText> {
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}

/**
 * Field names that hold secrets: `privateKey`, `client_secret`, `accessToken`, `password`, … and
 * header names that carry credentials (`authorization`, `proxy-authorization`, `cookie`,
 * `set-cookie`, `x-api-key`), as a headers filter's config names them.
 */
const SECRET_FIELD = /(private[_-]?key|secret|passw(or)?d|token|api[_-]?key|credentials?)$|^(proxy-)?authorization$|^(set-)?cookie$/i;
const PEM_PRIVATE_KEY = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;
export const REDACTED = '[redacted]';

/** JSON of a config dump: secrets and raw bytes never leave the process. */
export function configDumpJson(value: unknown): string {
  return JSON.stringify(
    value,
    function replacer(this: Record<string, unknown>, key: string, v: unknown) {
      const raw = key === '' ? v : this[key];
      if (key !== '' && SECRET_FIELD.test(key)) return REDACTED;
      if (ArrayBuffer.isView(raw)) return `<${raw.byteLength} bytes>`;
      if (raw instanceof ArrayBuffer) return `<${raw.byteLength} bytes>`;
      if (typeof v === 'string' && PEM_PRIVATE_KEY.test(v)) return REDACTED;
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Map) return Object.fromEntries(v);
      if (v instanceof Set) return [...v];
      return v;
    },
    2,
  ) ?? 'null';
}

function send(res: ServerResponse, status: number, contentType: string, body: string, head: boolean): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(head ? undefined : body);
}

const TEXT = 'text/plain; charset=utf-8';
const JSON_TYPE = 'application/json; charset=utf-8';

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function handle(opts: AdminOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const known = ENDPOINTS.some(([p]) => p === path);
  if (!known) {
    send(res, 404, TEXT, `not found: ${path}\n`, method === 'HEAD');
    return;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, TEXT, `method not allowed: ${method}\n`, false);
    return;
  }
  const head = method === 'HEAD';
  switch (path) {
    case '/': {
      const width = Math.max(...ENDPOINTS.map(([p]) => p.length));
      send(res, 200, TEXT, ENDPOINTS.map(([p, d]) => `${p.padEnd(width)}  ${d}`).join('\n') + '\n', head);
      return;
    }
    case '/healthz':
      send(res, 200, TEXT, 'ok\n', head);
      return;
    case '/ready': {
      let state: { ready: boolean; reason?: string };
      try {
        state = opts.ready();
      } catch (err) {
        state = { ready: false, reason: `readiness check failed: ${message(err)}` };
      }
      if (state.ready) send(res, 200, TEXT, 'ready\n', head);
      else send(res, 503, TEXT, `not ready: ${state.reason ?? 'unknown'}\n`, head);
      return;
    }
    case '/config_dump': {
      let body: string;
      try {
        body = configDumpJson(opts.configDump());
      } catch (err) {
        send(res, 500, TEXT, `config dump failed: ${message(err)}\n`, head);
        return;
      }
      send(res, 200, JSON_TYPE, body + '\n', head);
      return;
    }
    case '/stats/prometheus': {
      let m: MetricsText;
      try {
        m = await opts.metrics();
      } catch (err) {
        send(res, 500, TEXT, `metrics failed: ${message(err)}\n`, head);
        return;
      }
      send(res, 200, m.contentType, m.body, head);
      return;
    }
  }
}

export async function startAdminServer(opts: AdminOptions): Promise<AdminServer> {
  const server = createServer((req, res) => {
    // The admin API takes no bodies: drain whatever came so the connection can be reused.
    req.resume();
    handle(opts, req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, TEXT, `internal error: ${message(err)}\n`, false);
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? DEFAULT_ADMIN_PORT, opts.address ?? DEFAULT_ADMIN_ADDRESS, () => {
      server.off('error', reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  return {
    address: () => server.address() as AddressInfo,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), 2000);
        cut.unref();
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
