/**
 * `ambit validate --config` and `ambit --version` through the real CLI (the committed
 * bin shim, as `npx ambit` runs it): a valid config, the built-in filters bound by their
 * package names (built by `npm run build`, found in the repository's node_modules), and
 * a bad config refused with its code, file, line, column and JSON path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildBuiltinFilters, buildIfStale, builtinDir, HELLO_DIR, REPO } from './fixtures.js';

const run = promisify(execFile);
const AMBIT = path.join(REPO, 'node_modules/.bin/ambit');

async function ambit(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(AMBIT, args, { cwd: REPO });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('ambit validate', () => {
  let dir: string;
  beforeAll(async () => {
    await buildBuiltinFilters();
    await buildIfStale(builtinDir('mtls'));
    await buildIfStale(HELLO_DIR);
    // Inside the repository, so that package names resolve through its node_modules.
    await mkdir(path.join(REPO, '.scratch'), { recursive: true });
    dir = await mkdtemp(path.join(REPO, '.scratch', 'validate-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints the version of the runtime', async () => {
    const r = await ambit(['--version']);
    expect(r.stdout.trim()).toBe((JSON.parse(await readFile(path.join(REPO, 'runtime/package.json'), 'utf8')) as { version: string }).version);
  });

  it('checks the local mesh config without running it', async () => {
    const r = await ambit(['validate', '--config', 'examples/local/mesh.yaml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^examples\/local\/mesh\.yaml: valid — node local, 2 service\(s\), 0 workload\(s\), 1 binding\(s\), 1 filter\(s\)\n {2}\/bindings\/0\/filters\/0: hello sha256 [0-9a-f]{64} \(.*examples\/filters\/hello\)\n$/);
  });

  it('resolves the built-in filters by package name', async () => {
    const file = path.join(dir, 'builtins.yaml');
    await writeFile(file, `
node: n1
services:
  - { name: reviews, namespace: shop, ports: [{ port: 80, protocol: http }], endpoints: [{ address: 127.0.0.1 }] }
bindings:
  - name: reviews
    target: { service: reviews.shop }
    direction: outbound
    filters:
      - { ref: "@ambit/filter-authz", allowUnpinned: true, config: { policies: [] } }
      - { ref: "@ambit/filter-ratelimit@^0.1", allowUnpinned: true, config: { maxTokens: 100, tokensPerFill: 100, fillIntervalMs: 1000 } }
      - { ref: "@ambit/filter-fault", allowUnpinned: true, config: { abort: { percentage: 1, httpStatus: 503 } } }
      - { ref: "@ambit/filter-traffic-split", allowUnpinned: true, config: { subsets: [{ name: stable, weight: 100 }] } }
      - { ref: "@ambit/filter-headers", allowUnpinned: true, config: { request: { set: { x-a: "1" } } } }
      - { ref: "@ambit/filter-retry", allowUnpinned: true, config: { attempts: 3 } }
      - { ref: "@ambit/filter-mtls", allowUnpinned: true }
`);
    const r = await ambit(['validate', '--config', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1 binding(s), 7 filter(s)');
    for (const name of ['authz', 'ratelimit', 'fault', 'traffic-split', 'headers', 'retry', 'mtls']) {
      expect(r.stdout).toContain(`${path.join(REPO, 'filters', name)})`);
    }
  });

  it('refuses a bad config with its code, position and JSON path, and exit status 1', async () => {
    const file = path.join(dir, 'bad.yaml');
    await writeFile(file, 'node: n1\nservices:\n  - name: api\n    ports: [{ port: 70000 }]\n');
    const r = await ambit(['validate', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`AMBIT_ERR_MESH_CONFIG: ${file}:4:21: /services/0/ports/0/port: must be <= 65535\n`);
  });

  it('runs the same checks as ambit run: the error of a bad config names its code', async () => {
    const file = path.join(dir, 'bad-ref.yaml');
    await writeFile(file, 'node: n1\nbindings:\n  - name: b\n    target: { all: true }\n    direction: outbound\n    filters: [{ ref: "@acme/filter-nowhere@^1" }]\n');
    const r = await ambit(['run', '--config', file, '--workers', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ambit: error AMBIT_ERR_MESH_CONFIG: .*bad-ref\.yaml:6:22: \/bindings\/0\/filters\/0\/ref: filter package @acme\/filter-nowhere is not installed/m);
  });
});
