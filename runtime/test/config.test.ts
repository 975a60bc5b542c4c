/** The mesh config: loading, defaults, error messages, filter resolution, watching. Real files in a temp dir. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { buildFilter } from '@ambit/filter-sdk/build';
import { AmbitError, filterDigest } from '@ambit/filter-sdk/host';
import {
  loadMeshConfig, meshConfigJsonSchema, MeshConfigError, parseFilterRef, parseMeshConfig, resolveFilters, watchFiles,
  type ConfigIssue,
} from '../src/config/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../..');
const HELLO_DIR = path.join(REPO, 'examples/filters/hello');

let tmp: string;
let wasmSha: string;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

async function write(rel: string, text: string | Uint8Array): Promise<string> {
  const file = path.join(tmp, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

let helloWasm: Uint8Array;
let helloManifest: string;

/** A filter package folder as npm would install it: the hello component and its manifest. */
async function fakeFilterPackage(dir: string, pkg: Record<string, unknown>): Promise<void> {
  await mkdir(path.join(dir, 'dist'), { recursive: true });
  await writeFile(path.join(dir, 'dist/filter.wasm'), helloWasm);
  await writeFile(path.join(dir, 'dist/manifest.json'), helloManifest);
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ ambit: { filter: 'dist/filter.wasm' }, ...pkg }, null, 2));
}

/** The built hello filter, read when its wasm and manifest agree (another build may be writing them). */
async function readHello(): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if (!(await exists(path.join(HELLO_DIR, 'dist/filter.wasm'))) || !(await exists(path.join(HELLO_DIR, 'dist/manifest.json')))) {
      await buildFilter({ dir: HELLO_DIR });
    }
    const wasm = new Uint8Array(await readFile(path.join(HELLO_DIR, 'dist/filter.wasm')));
    const manifest = await readFile(path.join(HELLO_DIR, 'dist/manifest.json'), 'utf8');
    const sha = createHash('sha256').update(wasm).digest('hex');
    let pinned: string | undefined;
    try {
      pinned = (JSON.parse(manifest) as { sha256?: string }).sha256;
    } catch {
      pinned = undefined;
    }
    if (pinned === sha) {
      helloWasm = wasm;
      helloManifest = manifest;
      wasmSha = sha;
      return;
    }
    if (attempt >= 30) throw new Error(`${HELLO_DIR}/dist: filter.wasm does not match manifest.json; rebuild it`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

beforeAll(async () => {
  await readHello();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ambit-config-'));
  await fakeFilterPackage(path.join(tmp, 'node_modules/@vendor/filter-hello'), { name: '@vendor/filter-hello', version: '1.4.0' });
  // A package whose "exports" hide package.json: found by walking node_modules.
  await fakeFilterPackage(path.join(tmp, 'node_modules/filter-sealed'), {
    name: 'filter-sealed', version: '2.0.1', exports: { '.': './index.js' },
  });
});

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The issues of a config that must fail. */
function issuesOf(text: string, file = 'mesh.yaml'): ConfigIssue[] {
  try {
    parseMeshConfig(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(MeshConfigError);
    expect((e as MeshConfigError).code).toBe('AMBIT_ERR_MESH_CONFIG');
    return (e as MeshConfigError).issues;
  }
  throw new Error('config was accepted');
}

/** The message of a rejected config, less the code that leads it (checked here once). */
function messageOf(text: string, file = 'mesh.yaml'): string {
  try {
    parseMeshConfig(text, file);
  } catch (e) {
    const { message } = e as Error;
    expect(message.startsWith('AMBIT_ERR_MESH_CONFIG: ')).toBe(true);
    return message.slice('AMBIT_ERR_MESH_CONFIG: '.length);
  }
  throw new Error('config was accepted');
}

const SERVICES = `
node: n1
services:
  - name: catalog
    namespace: demo
    vip: 10.96.0.10
    ports:
      - port: 80
        targetPort: 8080
    selector: { app: catalog }
workloads:
  - name: catalog-1
    namespace: demo
    address: 10.1.0.5
    labels: { app: catalog }
`;

describe('mesh config: parsing and defaults', () => {
  it('fills in every default of a minimal config', () => {
    const { config, warnings } = parseMeshConfig('node: n1\n', 'mesh.yaml');
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      node: 'n1',
      trustDomain: 'cluster.local',
      proxy: {
        outbound: { address: '127.0.0.1', port: 15001 },
        inbound: { address: '127.0.0.1', port: 15006 },
        admin: { address: '127.0.0.1', port: 15000 },
        hbone: { address: '0.0.0.0', port: 15008 },
        engine: 'auto',
        filterThreads: 2,
        dataPath: 'auto',
        native: { maxConnections: 65_536 },
        wasmtime: { epochTickMs: 1, maxInstances: 1000, maxMemoryPages: 16384 },
        limits: {
          maxHeaderBytes: 65536, headersTimeoutMs: 10_000, requestTimeoutMs: 0, idleTimeoutMs: 60_000,
          retryBufferBytes: 65536, maxAttempts: 5, sniffTimeoutMs: 5000, drainTimeoutMs: 25_000,
        },
      },
      nodes: [],
      capture: { mode: 'auto', sockhash: true, nftTable: 'ambit' },
      workloads: [],
      services: [],
      bindings: [],
    });
  });

  it('fills in the defaults of workloads, services, ports and bindings', () => {
    const { config } = parseMeshConfig(`
node: n1
workloads:
  - { name: web-1, address: 10.1.0.4 }
services:
  - name: web
    ports: [{ port: 80 }]
    selector: { app: web }
bindings:
  - name: b
    target: { service: web.default }
    direction: inbound
    filters: [{ ref: ./f }]
`, 'mesh.yaml');
    expect(config.workloads[0]).toEqual({
      name: 'web-1', namespace: 'default', serviceAccount: 'default', address: '10.1.0.4', labels: {}, node: 'n1',
    });
    expect(config.services[0]).toEqual({
      name: 'web', namespace: 'default', ports: [{ port: 80, targetPort: 80, protocol: 'auto' }], selector: { app: 'web' },
      loadBalancer: 'least-request',
      outlierDetection: { consecutive5xx: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 50 },
      connectTimeoutMs: 5000, requestTimeoutMs: 15_000, perTryTimeoutMs: 0,
    });
    expect(config.bindings[0]).toEqual({
      name: 'b', target: { service: 'web.default' }, direction: 'inbound', priority: 0,
      filters: [{ ref: './f', allowUnpinned: false, maxKeys: 4096, failurePolicy: 'fail-closed', deadlineMs: 50, memoryMaxPages: 1024, instances: 'pooled' }],
    });
  });

  it('loads the local example and resolves its filter', async () => {
    const loaded = await loadMeshConfig(path.join(REPO, 'examples/local/mesh.yaml'));
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config.node).toBe('local');
    expect(loaded.config.proxy.outbound).toEqual({ address: '127.0.0.1', port: 15001, target: 'catalog.demo:80' });
    expect(loaded.config.services.map((s) => s.name)).toEqual(['catalog', 'reviews']);
    const resolved = await resolveFilters(loaded);
    const hello = resolved.filters.get('/bindings/0/filters/0')!;
    expect(hello.binding.name).toBe('hello');
    expect(hello.binding.config).toMatchObject({ header: 'x-ambit-hello', maxAttempts: 3, requireIdentity: false });
    expect(resolved.wasmFiles).toEqual([path.join(HELLO_DIR, 'dist/filter.wasm')]);
  });

  it('exports a JSON Schema for editors: defaulted properties are optional there', () => {
    const schema = meshConfigJsonSchema() as { required?: string[]; properties: Record<string, { required?: string[] }>; $schema: string };
    expect(schema.$schema).toContain('json-schema.org');
    expect(schema.required).toEqual(['node']);
    expect(schema.properties.proxy!.required).toBeUndefined();
    expect(JSON.stringify(schema)).toContain('"default":15001');
    // It accepts what the loader accepts.
    const ajv = new Ajv({ strict: false });
    expect(ajv.validate(schema, { node: 'n1', services: [{ name: 'a', ports: [{ port: 80 }] }] })).toBe(true);
    expect(ajv.validate(schema, { node: 'n1', services: [{ name: 'a', ports: [{ port: 0 }] }] })).toBe(false);
  });
});

describe('mesh config: errors name file, line, JSON path and expectation', () => {
  it('a number out of range', () => {
    const text = `node: n1
services:
  - name: catalog
    ports:
      - port: 70000
`;
    expect(messageOf(text)).toBe('mesh.yaml:5:15: /services/0/ports/0/port: must be <= 65535');
  });

  it('a missing required property, at the object that lacks it', () => {
    expect(messageOf('trustDomain: x\n')).toBe("mesh.yaml:1:1: /: must have required property 'node'");
    const issues = issuesOf('node: n1\nworkloads:\n  - name: w1\n    labels: {}\n');
    expect(issues).toEqual([{ file: 'mesh.yaml', pointer: '/workloads/0', line: 3, col: 5, message: "must have required property 'address'" }]);
  });

  it('an unknown (misspelt) property, at its key, with what was expected', () => {
    const text = 'node: n1\nproxy:\n  outbound:\n    prot: 15001\n';
    expect(messageOf(text)).toBe('mesh.yaml:4:5: /proxy/outbound/prot: unknown property; expected one of: address, port, target');
  });

  it('a value outside an enum', () => {
    const text = 'node: n1\nproxy:\n  engine: wasmer\n';
    expect(messageOf(text)).toBe('mesh.yaml:3:11: /proxy/engine: must be one of: v8, wasmtime, auto');
  });

  it('a wrong type says what it got', () => {
    const text = 'node: n1\nservices:\n  - name: a\n    ports:\n      - port: "80"\n';
    expect(messageOf(text)).toBe('mesh.yaml:5:15: /services/0/ports/0/port: must be integer, got string "80"');
  });

  it('a binding target: the meant form is checked, a shapeless one lists the forms', () => {
    const base = (target: string) => `node: n1
bindings:
  - name: b
    direction: outbound
    target: ${target}
    filters: [{ ref: ./f }]
`;
    const meant = messageOf(base('{ service: Catalog }'));
    expect(meant).toMatch(/^mesh\.yaml:5:24: \/bindings\/0\/target\/service: must match pattern .*name\.namespace/);
    expect(messageOf(base('{ services: x }'))).toBe(
      'mesh.yaml:5:13: /bindings/0/target: must be one of { service: name.namespace }, { workload: name.namespace }, { namespace: ns }, { all: true }',
    );
  });

  it('YAML syntax errors give line and column', () => {
    const issues = issuesOf('node: n1\nservices:\n  - name: a\n   ports: [\n');
    expect(issues[0]!.line).toBeGreaterThanOrEqual(3);
    expect(issues[0]!.message).toMatch(/^YAML: /);
    expect(messageOf('node: n1\nnode: n2\n')).toMatch(/^mesh\.yaml:2:1: \/: YAML: Map keys must be unique/);
  });

  it('an empty file', () => {
    expect(messageOf('# nothing\n')).toBe('mesh.yaml: /: the file is empty; expected a mesh config (at least `node: <name>`)');
  });

  it('a missing file names it', async () => {
    const missing = path.join(tmp, 'nope.yaml');
    await expect(loadMeshConfig(missing)).rejects.toThrow(`${missing}: /: cannot read the mesh config: ENOENT`);
  });

  it('reports every problem at once, one per line', () => {
    const text = `node: n1
services:
  - name: a
    ports: [{ port: 0 }]
  - name: b
    ports: [{ port: 80, protocol: udp }]
`;
    const lines = messageOf(text).split('\n');
    expect(lines).toEqual([
      'mesh.yaml:4:21: /services/0/ports/0/port: must be >= 1',
      'mesh.yaml:6:35: /services/1/ports/0/protocol: must be one of: auto, http, http2, tcp',
    ]);
  });
});

describe('mesh config: semantic checks', () => {
  it('duplicate service and workload names', () => {
    const issues = issuesOf(`node: n1
workloads:
  - { name: w, address: 10.0.0.1 }
  - { name: w, address: 10.0.0.2 }
services:
  - { name: s, ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.9 }] }
  - { name: s, namespace: default, ports: [{ port: 81 }], endpoints: [{ address: 10.0.0.9 }] }
`);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.pointer}: ${i.message}`)).toEqual([
      '4:13 /workloads/1/name: workload w.default is already defined at /workloads/0',
      '7:13 /services/1/name: service s.default is already defined at /services/0',
    ]);
  });

  it('service subsets: names unique per service, labels required', () => {
    const issues = issuesOf(`node: n1
services:
  - name: s
    ports: [{ port: 80 }]
    selector: { app: s }
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v1, labels: { version: v2 } }
`);
    expect(issues.map((i) => `${i.pointer}: ${i.message}`)).toEqual([
      '/services/0/subsets/1/name: subset v1 is already defined at /services/0/subsets/0; subset names must be unique within a service',
    ]);
    expect(messageOf(`node: n1
services:
  - { name: s, ports: [{ port: 80 }], subsets: [{ name: v1, labels: {} }] }
`)).toContain('/services/0/subsets/0/labels');
  });

  it('bad IP addresses', () => {
    const issues = issuesOf(`node: n1
workloads:
  - { name: w, address: 10.0.0.300 }
services:
  - name: s
    vip: not-an-ip
    ports: [{ port: 80 }]
    endpoints: [{ address: "::1" }, { address: "10.0.0" }]
`);
    expect(issues.map((i) => `${i.pointer}: ${i.message}`)).toEqual([
      '/workloads/0/address: must be an IPv4 or IPv6 address, got "10.0.0.300"',
      '/services/0/vip: must be an IPv4 or IPv6 address, got "not-an-ip"',
      '/services/0/endpoints/1/address: must be an IPv4 or IPv6 address, got "10.0.0"',
    ]);
    expect(issues[0]).toMatchObject({ line: 3, col: 25 });
  });

  it('duplicate VIP:port across services, and a VIP that is a workload address', () => {
    const issues = issuesOf(`node: n1
workloads:
  - { name: w, address: 10.0.0.1 }
services:
  - { name: a, vip: 10.96.0.1, ports: [{ port: 80 }, { port: 443 }], endpoints: [{ address: 10.0.0.9 }] }
  - { name: b, vip: 10.96.0.1, ports: [{ port: 443 }], endpoints: [{ address: 10.0.0.9 }] }
  - { name: c, vip: 10.96.0.1, ports: [{ port: 8080 }], endpoints: [{ address: 10.0.0.9 }] }
  - { name: d, vip: 10.0.0.1, ports: [{ port: 80 }], endpoints: [{ address: 10.0.0.9 }] }
`);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.pointer}: ${i.message}`)).toEqual([
      "6:21 /services/1/vip: 10.96.0.1:443 is already service a.default's; two services cannot share a VIP and port",
      '8:21 /services/3/vip: 10.0.0.1 is the address of workload w.default; a VIP must not be a workload address',
    ]);
  });

  it('a binding naming an unknown service or workload is an error; a selector matching nothing a warning', () => {
    const issues = issuesOf(`${SERVICES}
bindings:
  - name: b1
    target: { service: reviews.demo }
    direction: outbound
    filters: [{ ref: ./f }]
  - name: b2
    target: { workload: catalog-2.demo }
    direction: inbound
    filters: [{ ref: ./f }]
`);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.pointer}: ${i.message}`)).toEqual([
      '19:24 /bindings/0/target/service: no service reviews.demo in this config (services: catalog.demo)',
      '23:25 /bindings/1/target/workload: no workload catalog-2.demo in this config (workloads: catalog-1.demo)',
    ]);
    const { warnings } = parseMeshConfig(SERVICES.replace('selector: { app: catalog }', 'selector: { app: catalogue }'), 'mesh.yaml');
    expect(warnings.map((w) => `${w.line}:${w.col} ${w.pointer}: ${w.message}`)).toEqual([
      '10:15 /services/0/selector: selects no workload in namespace demo (labels {"app":"catalogue"}); the service has no endpoints',
    ]);
  });

  it('the outbound fallback target must name a known service port or an ip:port', () => {
    const base = (t: string) => `${SERVICES}proxy:\n  outbound:\n    target: "${t}"\n`;
    expect(() => parseMeshConfig(base('catalog.demo:80'), 'mesh.yaml')).not.toThrow();
    expect(() => parseMeshConfig(base('[::1]:8080'), 'mesh.yaml')).not.toThrow();
    expect(messageOf(base('catalog.demo:81'))).toBe('mesh.yaml:18:13: /proxy/outbound/target: service catalog.demo has no port 81 (ports: 80)');
    expect(messageOf(base('reviews.demo:80'))).toMatch(/target: reviews\.demo is not a service of this config/);
    expect(messageOf(base('10.0.0.1'))).toMatch(/target: must be <ip>:<port>/);
  });

  it('listeners on one address and port, duplicate ports, endpoint ports on multi-port services, bad refs', () => {
    const issues = issuesOf(`node: n1
proxy:
  admin: { port: 15001 }
services:
  - name: s
    ports: [{ port: 80 }, { port: 80, name: x }]
    endpoints: [{ address: 10.0.0.1, port: 8080 }]
bindings:
  - name: b
    target: { all: true }
    direction: outbound
    filters: [{ ref: "Not A Package" }, { ref: "@v/f@^banana" }]
`);
    expect(issues.map((i) => `${i.pointer}: ${i.message}`)).toEqual([
      '/proxy/admin/port: 127.0.0.1:15001 is already the outbound listener; give each listener its own port',
      '/services/0/ports/1/port: port 80 is already listed at /services/0/ports/0',
      "/services/0/endpoints/0/port: an endpoint of a multi-port service takes each port's targetPort; remove port (or split the service)",
      '/bindings/0/filters/0/ref: "Not A Package" is neither a path (start it with ./ or ../) nor an npm package name such as @vendor/filter-x@^1.2',
      '/bindings/0/filters/1/ref: "@v/f@^banana": "^banana" is not a semver range (write e.g. ^1.2, ~1.2.3, 1.x or >=1.2 <2)',
    ]);
  });
});

describe('filter refs', () => {
  it('tells paths from npm specs', () => {
    expect(parseFilterRef('./x')).toEqual({ kind: 'path', path: './x' });
    expect(parseFilterRef('../filters/hello')).toEqual({ kind: 'path', path: '../filters/hello' });
    expect(parseFilterRef('filters/hello')).toEqual({ kind: 'path', path: 'filters/hello' });
    expect(parseFilterRef('/abs/f.wasm')).toEqual({ kind: 'path', path: '/abs/f.wasm' });
    expect(parseFilterRef('f.wasm')).toEqual({ kind: 'path', path: 'f.wasm' });
    expect(parseFilterRef('@vendor/filter-x@^1.2')).toEqual({ kind: 'npm', name: '@vendor/filter-x', range: '^1.2' });
    expect(parseFilterRef('@vendor/filter-x')).toEqual({ kind: 'npm', name: '@vendor/filter-x', range: undefined });
    expect(parseFilterRef('filter-x@1.2.3')).toEqual({ kind: 'npm', name: 'filter-x', range: '1.2.3' });
  });

  const config = (filter: string) => `node: n1
bindings:
  - name: b
    target: { all: true }
    direction: outbound
    filters:
      - ${filter}
`;

  async function resolveText(text: string, name = 'mesh.yaml') {
    const file = await write(name, text);
    return resolveFilters(await loadMeshConfig(file));
  }

  /** The failure, with the temp folder taken off the file name. */
  async function failure(text: string): Promise<AmbitError> {
    try {
      await resolveText(text);
    } catch (e) {
      expect(e).toBeInstanceOf(AmbitError);
      const err = e as AmbitError;
      // The code leads the message; the rest names the file.
      expect(err.message.startsWith(`${err.code}: ${tmp}/mesh.yaml:`)).toBe(true);
      const message = err.message.slice(err.code.length + 2);
      return new AmbitError(err.code, message.split('\n').map((l) => (l.startsWith(`${tmp}/`) ? l.slice(tmp.length + 1) : l)).join('\n'));
    }
    throw new Error('filters resolved');
  }

  it('resolves an npm spec from node_modules beside (or above) the config file, checking the range', async () => {
    const r = await resolveText(config('{ ref: "@vendor/filter-hello@^1.2", allowUnpinned: true, config: { maxAttempts: 2 } }'), 'sub/dir/mesh.yaml');
    const f = r.filters.get('/bindings/0/filters/0')!;
    expect(f.location).toBe(path.join(tmp, 'node_modules/@vendor/filter-hello'));
    expect(f.binding.config).toMatchObject({ maxAttempts: 2, header: 'x-ambit-hello' });
    expect(f.binding.sha256).toBe(wasmSha);
    expect(r.wasmFiles).toEqual([path.join(tmp, 'node_modules/@vendor/filter-hello/dist/filter.wasm')]);
  });

  it('finds a package whose exports hide package.json', async () => {
    const r = await resolveText(config('{ ref: "filter-sealed@2", name: sealed, allowUnpinned: true }'));
    expect(r.filters.get('/bindings/0/filters/0')!.binding.name).toBe('sealed');
  });

  it('says which version is installed when it does not satisfy the range', async () => {
    const e = await failure(config('{ ref: "@vendor/filter-hello@^2.0" }'));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toBe(`mesh.yaml:7:16: /bindings/0/filters/0/ref: @vendor/filter-hello 1.4.0 is installed (${path.join(tmp, 'node_modules/@vendor/filter-hello')}) but the binding wants ^2.0; run: npm install @vendor/filter-hello@^2.0`);
  });

  it('says how to install a missing package', async () => {
    const e = await failure(config('{ ref: "@vendor/filter-missing@^1" }'));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toMatch(/^mesh\.yaml:7:16: \/bindings\/0\/filters\/0\/ref: filter package @vendor\/filter-missing is not installed .*; run: npm install @vendor\/filter-missing@\^1$/);
  });

  it('a path is relative to the config file; a wrong one names where it looked', async () => {
    await fakeFilterPackage(path.join(tmp, 'filters/local-hello'), { name: 'local-hello', version: '0.0.1' });
    const r = await resolveText(config('{ ref: ../filters/local-hello }'), 'conf/mesh.yaml');
    expect(r.filters.get('/bindings/0/filters/0')!.location).toBe(path.join(tmp, 'filters/local-hello'));
    const e = await failure(config('{ ref: ./filters/nope }'));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toContain(`mesh.yaml:7:16: /bindings/0/filters/0/ref: filter ${path.join(tmp, 'filters/nope')} not found`);
  });

  it('checks a sha256 pin (the filter digest), hex or sha256-base64', async () => {
    const m = JSON.parse(helloManifest) as { capabilities: string[]; schema: object };
    const digest = filterDigest({ sha256: wasmSha, capabilities: m.capabilities, schema: m.schema });
    const base64 = `sha256-${Buffer.from(digest, 'hex').toString('base64')}`;
    await expect(resolveText(config(`{ ref: "@vendor/filter-hello", sha256: "${digest}" }`))).resolves.toBeTruthy();
    await expect(resolveText(config(`{ ref: "@vendor/filter-hello", sha256: "${base64}" }`))).resolves.toBeTruthy();
    const wrong = '0'.repeat(64);
    const e = await failure(config(`{ ref: "@vendor/filter-hello", sha256: "${wrong}" }`));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
    expect(e.message).toMatch(new RegExp(`^mesh\\.yaml:7:48: /bindings/0/filters/0/sha256: .*filter\\.wasm does not match the pin: the binding pins ${wrong}, but its filter digest is ${digest} \\(over the component, sha256 ${wasmSha}, .*\\): refusing to load it$`));
    // A malformed pin is a schema error.
    const bad = await failure(config('{ ref: "@vendor/filter-hello", sha256: "abc" }'));
    expect(bad.message).toMatch(/^mesh\.yaml:7:48: \/bindings\/0\/filters\/0\/sha256: must match pattern/);
  });

  it('validates each binding\'s config against the filter\'s schema, at the line of the bad value', async () => {
    const text = `node: n1
bindings:
  - name: b
    target: { all: true }
    direction: outbound
    filters:
      - ref: "@vendor/filter-hello"
        allowUnpinned: true
        config:
          maxAttempts: 99
          colour: blue
`;
    const e = await failure(text);
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message.split('\n')).toEqual([
      'mesh.yaml:11:11: /bindings/0/filters/0/config/colour: unknown property (filter hello: see its schema)',
      'mesh.yaml:10:24: /bindings/0/filters/0/config/maxAttempts: must be <= 10 (filter hello: see its schema)',
    ]);
  });
});

describe('config watcher', () => {
  /** Resolves once `calls` has at least n entries, or after `ms`. */
  async function settle(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  it('fires once, debounced, on a config rewrite and on a wasm replaced by rename', async () => {
    const dir = path.join(tmp, 'watch1');
    const cfg = await write('watch1/mesh.yaml', 'node: a\n');
    const wasm = await write('watch1/filter/dist/filter.wasm', new Uint8Array([0, 97, 115, 109]));
    await write('watch1/other.txt', 'x');
    const calls: string[][] = [];
    const w = watchFiles([cfg, wasm], (changed) => calls.push(changed.sort()), { debounceMs: 150 });
    try {
      await settle(100);
      // An editor saving three times in a row: one call.
      for (const n of ['b', 'c', 'd']) {
        await writeFile(cfg, `node: ${n}\n`);
        await settle(20);
      }
      await settle(400);
      expect(calls).toEqual([[cfg]]);

      // Files the watcher was not asked about do not count.
      await writeFile(path.join(dir, 'other.txt'), 'y');
      await settle(300);
      expect(calls).toHaveLength(1);

      // A build writing a temp file and renaming it over the component.
      const tmpWasm = path.join(dir, 'filter/dist/.filter.wasm.tmp');
      await writeFile(tmpWasm, new Uint8Array([0, 97, 115, 109, 1]));
      await rename(tmpWasm, wasm);
      await settle(400);
      expect(calls).toEqual([[cfg], [wasm]]);

      // A vim-style save: rename the original away, write a new file.
      await rename(cfg, `${cfg}~`);
      await writeFile(cfg, 'node: e\n');
      await settle(400);
      expect(calls).toHaveLength(3);
      expect(calls[2]).toEqual([cfg]);
    } finally {
      w.close();
    }
  });

  it('follows a folder that is removed and created again', async () => {
    const wasm = await write('watch2/pkg/dist/filter.wasm', 'v1');
    const calls: string[][] = [];
    const w = watchFiles([wasm], (changed) => calls.push(changed), { debounceMs: 100 });
    try {
      await settle(100);
      await rm(path.dirname(wasm), { recursive: true });
      await settle(300);
      await mkdir(path.dirname(wasm));
      await settle(100);
      await writeFile(wasm, 'v2');
      await settle(400);
      const before = calls.length;
      expect(before).toBeGreaterThanOrEqual(1);
      expect(calls.flat().every((f) => f === wasm)).toBe(true);
      // Still watching the new folder.
      await writeFile(wasm, 'v3');
      await settle(400);
      expect(calls.length).toBe(before + 1);
    } finally {
      w.close();
    }
  });

  it('stops after close, and update() changes the watched set', async () => {
    const a = await write('watch3/a.yaml', '1');
    const b = await write('watch3/b/b.wasm', '1');
    const calls: string[][] = [];
    const w = watchFiles([a], (changed) => calls.push(changed), { debounceMs: 80 });
    await settle(100);
    w.update([b]);
    await writeFile(a, '2');
    await writeFile(b, '2');
    await settle(300);
    expect(calls).toEqual([[b]]);
    w.close();
    await writeFile(b, '3');
    await settle(300);
    expect(calls).toHaveLength(1);
  });
});
