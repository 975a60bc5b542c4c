/**
 * Filters through a real npm registry: verdaccio on loopback, the SDK and a filter
 * published with the npm CLI, and node proxies resolving `@acme/filter-x@^1` through
 * `filterSource` — the lock file, the cache, SRI integrity, the binding's sha256 pin,
 * a tampered tarball, and a registry that is down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildFilter } from '@ambit/filter-sdk/build';
import { AmbitError, filterDigest } from '@ambit/filter-sdk/host';
import { runNode, type RunningNode } from '@ambit/runtime';
import { HELLO_DIR, REPO } from './fixtures.js';
import { startRegistry, type LocalRegistry } from './support/registry.js';
import { httpUpstream, type Upstream } from './support/upstreams.js';

const run = promisify(execFile);

function get(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

interface Lock { lockfileVersion: number; filters: Record<string, { name: string; version: string; resolved: string; integrity: string; signatures: string; provenance: string; wasmSha256: string }> }

describe('filters from an npm registry (verdaccio on loopback)', () => {
  let root: string;
  let registry: LocalRegistry;
  let upstream: Upstream;
  let filterDir: string;
  let wasmSha256: string;
  /** What a binding pins: the filter digest (component, capabilities, schema). */
  let digest: string;
  const nodes: RunningNode[] = [];

  /** Writes a node's mesh config binding `ref` (through the registry) and returns its path. */
  async function meshConfig(name: string, o: { ref?: string; sha256?: string; cacheDir?: string; lockFile?: string; frozenLock?: boolean } = {}): Promise<string> {
    const file = path.join(root, `${name}.yaml`);
    await writeFile(file, `
node: ${name}
proxy:
  outbound: { address: 127.0.0.1, port: 15001, target: "api.test:80" }
  limits: { drainTimeoutMs: 500 }
services:
  - name: api
    namespace: test
    ports: [{ port: 80, targetPort: ${upstream.port}, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
filterSource:
  registry: ${registry.url}
  cacheDir: ${o.cacheDir ?? 'cache'}
  lockFile: ${o.lockFile ?? `${name}.lock.json`}
  frozenLock: ${o.frozenLock ?? false}
  timeoutMs: 5000
bindings:
  - name: greet
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: "${o.ref ?? '@acme/filter-x@^1'}"
        sha256: ${o.sha256 ?? digest}\n        config: { header: x-from-registry }
        # The first call on a cold V8 instance of a busy machine can pass the 50 ms default:
        # this test is about where the filter comes from, not its deadline.
        deadlineMs: 2000
`);
    return file;
  }

  async function start(config: string): Promise<RunningNode> {
    const node = await runNode({ config, accessLog: 'off', logLevel: 'silent', ports: { outbound: 0, inbound: 0, admin: 0 } });
    nodes.push(node);
    return node;
  }

  async function startFails(config: string): Promise<AmbitError> {
    const e = await runNode({ config, accessLog: 'off', logLevel: 'silent', ports: { outbound: 0, inbound: 0, admin: 0 } }).then(
      (n) => { nodes.push(n); throw new Error('the node started'); },
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(AmbitError);
    return e as AmbitError;
  }

  /** Publishes the built filter as `version` (`tag`: for versions below the latest, as npm requires). */
  async function publishVersion(version: string, tag?: string): Promise<void> {
    const pkgPath = path.join(filterDir, 'package.json');
    const pkg = JSON.parse(await readFile(pkgPath, 'utf8')) as Record<string, unknown>;
    await writeFile(pkgPath, JSON.stringify({ ...pkg, version }, null, 2));
    await registry.publish(filterDir, tag);
  }

  async function packument(name: string): Promise<{ versions: Record<string, { dist: { integrity: string; tarball: string } }> }> {
    return (await fetch(`${registry.url}${name.replace('/', '%2f')}`)).json() as never;
  }

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'ambit-registry-'));
    registry = await startRegistry(path.join(root, 'registry'));
    upstream = await httpUpstream('api');
    // The SDK, packed as `npm pack` would ship it, and a vendor's filter built with it.
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', root], { cwd: path.join(REPO, 'sdk') });
    await registry.publish(path.join(root, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename));
    filterDir = path.join(root, 'filter-x');
    await cp(HELLO_DIR, filterDir, { recursive: true, filter: (src) => !src.includes('node_modules') && !src.includes(`${path.sep}dist`) });
    const pkg = JSON.parse(await readFile(path.join(filterDir, 'package.json'), 'utf8')) as Record<string, unknown>;
    delete pkg.private;
    await writeFile(path.join(filterDir, 'package.json'), JSON.stringify({ ...pkg, name: '@acme/filter-x', version: '1.0.0', dependencies: {} }, null, 2));
    const built = await buildFilter({ dir: filterDir });
    wasmSha256 = built.manifest.sha256;
    digest = filterDigest({ sha256: wasmSha256, capabilities: built.manifest.capabilities, schema: built.manifest.schema ?? undefined });
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) await publishVersion(v);
  });

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    await registry?.stop();
    await upstream?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('serves the SDK and the filter like any npm registry', async () => {
    const sdk = await packument('@ambit/filter-sdk');
    expect(Object.keys(sdk.versions)).toEqual(['0.1.0']);
    expect(Object.keys((await packument('@acme/filter-x')).versions).sort()).toEqual(['1.0.0', '1.1.0', '2.0.0']);
  });

  it('resolves @acme/filter-x@^1 into the cache, checked against the registry\'s integrity, pinned, and locked', async () => {
    const config = await meshConfig('node-a', { sha256: digest });
    const node = await start(config);
    const r = await get(node.proxy.addresses().outbound!.port, '/hello');
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-from-registry']).toMatch(/^hello from /);

    const lock = JSON.parse(await readFile(path.join(root, 'node-a.lock.json'), 'utf8')) as Lock;
    const published = (await packument('@acme/filter-x')).versions['1.1.0']!.dist;
    expect(lock).toEqual({
      lockfileVersion: 1,
      filters: {
        '@acme/filter-x@^1': {
          name: '@acme/filter-x', version: '1.1.0', resolved: published.tarball, integrity: published.integrity,
          signatures: 'unsigned', provenance: 'none', wasmSha256,
        },
      },
    });
    // The cached tarball is the registry's, byte for byte.
    const tgz = await fetch(published.tarball).then(async (res) => Buffer.from(await res.arrayBuffer()));
    expect(`sha512-${createHash('sha512').update(tgz).digest('base64')}`).toBe(published.integrity);
  });

  it('refuses a package whose component does not match the binding\'s sha256 pin', async () => {
    const wrong = 'a'.repeat(64);
    const e = await startFails(await meshConfig('node-pin', { sha256: wrong }));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
    expect(e.message).toMatch(/^AMBIT_ERR_INTEGRITY: .*node-pin\.yaml:\d+:\d+: \/bindings\/0\/filters\/0\/sha256: .*does not match the pin: the binding pins a{64}, but its filter digest is [0-9a-f]{64} .*refusing to load it/);
  });

  it('keeps the locked version when a newer one is published; without the lock, takes the newer', async () => {
    await publishVersion('1.3.0', 'one-x');
    await start(await meshConfig('node-a'));
    // The lock is rewritten with what was used: still 1.1.0.
    const lock = JSON.parse(await readFile(path.join(root, 'node-a.lock.json'), 'utf8')) as Lock;
    expect(lock.filters['@acme/filter-x@^1']!.version).toBe('1.1.0');
    await start(await meshConfig('node-b'));
    const fresh = JSON.parse(await readFile(path.join(root, 'node-b.lock.json'), 'utf8')) as Lock;
    expect(fresh.filters['@acme/filter-x@^1']!.version).toBe('1.3.0');
  });

  it('refuses a tampered tarball, saying why', async () => {
    await publishVersion('1.4.0', 'one-x');
    // Someone with access to the registry's storage swaps the tarball for another one.
    const stored = path.join(registry.storage, '@acme/filter-x/filter-x-1.4.0.tgz');
    const original = await readFile(stored);
    await writeFile(stored, await readFile(path.join(registry.storage, '@acme/filter-x/filter-x-1.0.0.tgz')));
    const published = (await packument('@acme/filter-x')).versions['1.4.0']!.dist.integrity;
    const e = await startFails(await meshConfig('node-tampered', { cacheDir: 'cache-tampered' }));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
    expect(e.message).toContain('the tarball of @acme/filter-x@1.4.0');
    expect(e.message).toContain(`does not match the integrity the registry published: its content has sha512-`);
    expect(e.message).toContain(`expected ${published}; refusing it (a tampered or corrupted package)`);
    await writeFile(stored, original);
  });

  it('refuses a ref missing from a frozen lock', async () => {
    const e = await startFails(await meshConfig('node-frozen', { lockFile: 'node-a.lock.json', ref: '@acme/filter-x@^2', frozenLock: true }));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toMatch(/\/bindings\/0\/filters\/0\/ref: the filter lock .*node-a\.lock\.json has @acme\/filter-x@1\.1\.0 for @acme\/filter-x@\^2|@acme\/filter-x@\^2 is not in the filter lock/);
  });

  it('starts a node with a lock and a warm cache while the registry is down; a cold one says why it cannot', async () => {
    await registry.stop();
    const node = await start(await meshConfig('node-a'));
    const r = await get(node.proxy.addresses().outbound!.port, '/hello');
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-from-registry']).toMatch(/^hello from /);

    // The CLI, as an operator runs it: the same resolution, from the lock and the cache.
    const { stdout } = await run(path.join(REPO, 'node_modules/.bin/ambit'), ['validate', '--config', path.join(root, 'node-a.yaml')]);
    expect(stdout).toMatch(/node-a\.yaml: valid — node node-a, 1 service\(s\), 0 workload\(s\), 1 binding\(s\), 1 filter\(s\)\n {2}\/bindings\/0\/filters\/0: hello sha256 [0-9a-f]{64} \(.*cache\/packages\/@acme\+filter-x@1\.1\.0-[0-9a-f]{16}\)/);

    const e = await startFails(await meshConfig('node-cold', { cacheDir: 'cache-cold' }));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toMatch(/\/bindings\/0\/filters\/0\/ref: the filter registry http:\/\/127\.0\.0\.1:\d+\/ is unreachable \(the versions of @acme\/filter-x: .*\); with a filter lock/);
  });
});
