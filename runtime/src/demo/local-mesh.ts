/**
 * `ambit local` (what `npm start` runs): a local mesh from examples/local/mesh.yaml —
 * the node proxy, two demo services and the example filter built from TypeScript —
 * then the curl commands that show the filter acting, run once for you.
 */
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { buildFilter } from '@ambit/filter-sdk/build';
import { runNode, type RunningNode } from '../node/run.js';
import { startCatalog, startReviews, type DemoServer } from './upstreams.js';

export interface LocalMesh {
  node: RunningNode;
  servers: DemoServer[];
  close(): Promise<void>;
}

export async function startLocalMesh(repoRoot: string, out: (line: string) => void, opts: { accessLog?: string } = {}): Promise<LocalMesh> {
  out('Building the example filter (examples/filters/hello) from TypeScript…');
  await buildFilter({ dir: path.join(repoRoot, 'examples/filters/hello'), log: (l) => out(`  ${l}`) });
  const servers = [await startCatalog('127.0.0.1', 18081), await startReviews('127.0.0.1', 18082)];
  out(`Demo services: catalog on 127.0.0.1:18081, reviews (flaky) on 127.0.0.1:18082`);
  const accessLog = opts.accessLog ?? path.join(os.tmpdir(), 'ambit-local-access.log');
  const node = await runNode({ config: path.join(repoRoot, 'examples/local/mesh.yaml'), accessLog: { file: accessLog }, logLevel: 'warn' });
  out(`Node proxy: outbound listener 127.0.0.1:15001, admin http://127.0.0.1:15000/ (access log: ${accessLog})`);
  return {
    node, servers,
    async close() {
      await node.close();
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

function fetchThrough(pathname: string, host?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: 15001, path: pathname, headers: host ? { host } : {}, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The curl commands, each run once through the proxy with what came back. */
export async function showLocalMesh(out: (line: string) => void): Promise<void> {
  const demos: Array<{ title: string; curl: string; path: string; host?: string; show: (r: Awaited<ReturnType<typeof fetchThrough>>) => string }> = [
    {
      title: 'A header added by the filter (catalog echoes the x- headers it received)',
      curl: 'curl -s http://127.0.0.1:15001/products',
      path: '/products',
      show: (r) => `${r.status}; catalog saw x-ambit-hello: ${String((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-ambit-hello'])}`,
    },
    {
      title: 'A 403 from the filter\'s policy (the request never reaches catalog)',
      curl: 'curl -si http://127.0.0.1:15001/admin/console',
      path: '/admin/console',
      show: (r) => `${r.status} ${r.body.trim()}`,
    },
    {
      title: 'A retry recovering a flaky upstream (reviews fails 2 of 3 requests; the filter retries 503s)',
      curl: 'curl -si -H "Host: reviews.demo" http://127.0.0.1:15001/reviews/1',
      path: '/reviews/1',
      host: 'reviews.demo',
      show: (r) => `${r.status} after ${String(r.headers['x-ambit-attempts'])} attempt(s)`,
    },
    {
      title: 'Metrics and the effective config',
      curl: 'curl -s http://127.0.0.1:15000/stats/prometheus | grep ambit_requests_total; curl -s http://127.0.0.1:15000/config_dump',
      path: '',
      show: () => '',
    },
  ];
  out('\nTry these (each was just run once; the results follow):\n');
  for (const d of demos) {
    out(`# ${d.title}\n  ${d.curl}`);
    if (d.path) {
      const r = await fetchThrough(d.path, d.host);
      out(`  → ${d.show(r)}`);
    }
    out('');
  }
}
