/**
 * The mesh behind `ambit-filter dev`: one node proxy on loopback with one filter bound
 * outbound in front of one upstream (the built-in echo server unless told otherwise).
 *
 *   curl ──▶ 127.0.0.1:<port> (outbound listener) ── the filter ──▶ echo (127.0.0.1:<any>)
 *
 * The mesh config is written to a temporary folder and points at the filter package by
 * path, so every rebuild of the package is picked up by `reload()`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { AmbitError } from '../deps.js';
import { startEcho, type DemoServer } from '../demo/upstreams.js';
import { runNode, type RunningNode } from '../node/run.js';

export interface DevMeshOptions {
  /** The filter package folder (built: `dist/filter.wasm`). */
  filterDir: string;
  /** The outbound listener on 127.0.0.1. Default 15001; 0 picks a free port. */
  port?: number;
  /** The admin API on 127.0.0.1. Default 15000; 0 picks a free port. */
  adminPort?: number;
  /** `host:port` of an upstream to use instead of the echo server. */
  upstream?: string;
  /** The binding's config for the filter. */
  filterConfig?: unknown;
  /** Proxy log level (filter `log.*` lines appear at info). Default `info`. */
  logLevel?: string;
}

export interface DevMesh {
  /** The proxy's URL (`http://127.0.0.1:15001`). */
  readonly url: string;
  readonly adminUrl: string;
  /** Where the traffic goes behind the filter (`127.0.0.1:43121`). */
  readonly upstream: string;
  /** The mesh config written for this run. */
  readonly configFile: string;
  readonly node: RunningNode;
  /** Loads the filter again (after a rebuild); false, with the previous one serving, when it fails. */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

function parseUpstream(v: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new AmbitError('AMBIT_ERR_MESH_CONFIG', `AMBIT_ERR_MESH_CONFIG: --upstream ${JSON.stringify(v)} is not host:port; write e.g. 127.0.0.1:8080`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export async function startDevMesh(options: DevMeshOptions): Promise<DevMesh> {
  const filterDir = path.resolve(options.filterDir);
  const upstream = options.upstream ? parseUpstream(options.upstream) : undefined;
  let echo: DemoServer | undefined;
  if (!upstream) echo = await startEcho('127.0.0.1', 0);
  const target = upstream ?? { host: '127.0.0.1', port: echo!.port };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-dev-'));
  const configFile = path.join(dir, 'mesh.yaml');
  const config = {
    node: 'dev',
    proxy: {
      outbound: { address: '127.0.0.1', port: options.port || 15001, target: 'upstream.dev:80' },
      inbound: { address: '127.0.0.1' },
      admin: { address: '127.0.0.1', port: options.adminPort || 15000 },
      workers: 1,
      // Stop at once on Ctrl-C: nothing here is worth waiting for.
      limits: { drainTimeoutMs: 500 },
    },
    services: [{
      name: 'upstream', namespace: 'dev',
      ports: [{ port: 80, targetPort: target.port, protocol: 'http', name: 'http' }],
      endpoints: [{ address: target.host }],
    }],
    bindings: [{
      name: 'dev', target: { service: 'upstream.dev' }, direction: 'outbound',
      // A first call on a cold engine instance (just rebuilt) may take longer than the
      // node proxy's 50 ms default; in development that is not the failure to show.
      filters: [{ ref: filterDir, deadlineMs: 1000, ...(options.filterConfig === undefined ? {} : { config: options.filterConfig }) }],
    }],
  };
  await writeFile(configFile, `# written by ambit-filter dev for ${filterDir}\n${stringify(config)}`);
  let node: RunningNode;
  try {
    node = await runNode({
      config: configFile, watch: false, accessLog: 'off', logLevel: options.logLevel ?? 'info', capture: false,
      // The inbound listener is not used here: any free port, so two dev meshes never collide on it.
      ports: { outbound: options.port ?? 15001, inbound: 0, admin: options.adminPort ?? 15000 },
    });
  } catch (e) {
    await echo?.close();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const port = node.proxy.addresses().outbound?.port ?? options.port ?? 15001;
  const adminPort = node.admin?.address().port ?? options.adminPort ?? 15000;
  return {
    url: `http://127.0.0.1:${port}`,
    adminUrl: `http://127.0.0.1:${adminPort}`,
    upstream: `${target.host}:${target.port}`,
    configFile, node,
    reload: () => node.reload(),
    async close() {
      await node.close();
      await echo?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
