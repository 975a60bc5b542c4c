/**
 * What a filter may do is the operator's decision, not the filter package's:
 *
 * - a binding's `capabilities:` is a grant; a filter declaring more is refused at load, naming
 *   the difference;
 * - the `sha256` pin is the filter digest, which covers the component and its manifest (the
 *   capabilities and the config schema): changing either in an installed package breaks the pin;
 * - npm refs must be pinned unless the binding says `allowUnpinned: true`.
 *
 * Real filter packages (the hello example's component) in a temp node_modules.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AmbitError, filterDigest } from '@ambit/filter-sdk/host';
import { loadMeshConfig, resolveFilters } from '../src/config/index.js';
import { buildIfStale, REPO } from './fixtures.js';

const HELLO_DIR = path.join(REPO, 'examples/filters/hello');

let tmp: string;
let wasm: Uint8Array;
let manifest: { capabilities: string[]; schema: object | null; sha256: string };

/** A filter package as npm installs it: the hello component, its manifest, and package.json `ambit` fields. */
async function fakePackage(name: string, ambit: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(tmp, 'node_modules', name);
  await mkdir(path.join(dir, 'dist'), { recursive: true });
  await writeFile(path.join(dir, 'dist/filter.wasm'), wasm);
  await writeFile(path.join(dir, 'dist/manifest.json'), JSON.stringify(manifest));
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', ambit: { filter: 'dist/filter.wasm', ...ambit } }));
  return dir;
}

const config = (filter: string) => `node: n1
bindings:
  - name: b
    target: { all: true }
    direction: outbound
    filters:
      - ${filter}
`;

async function resolveText(text: string) {
  const file = path.join(tmp, 'mesh.yaml');
  await writeFile(file, text);
  return resolveFilters(await loadMeshConfig(file));
}

async function failure(text: string): Promise<AmbitError> {
  const e = await resolveText(text).then(() => undefined, (err: unknown) => err);
  if (!(e instanceof AmbitError)) throw new Error(`expected a refusal, got ${String(e)}`);
  return e;
}

beforeAll(async () => {
  await buildIfStale(HELLO_DIR);
  wasm = new Uint8Array(await readFile(path.join(HELLO_DIR, 'dist/filter.wasm')));
  manifest = JSON.parse(await readFile(path.join(HELLO_DIR, 'dist/manifest.json'), 'utf8')) as typeof manifest;
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ambit-config-trust-'));
  await fakePackage('@vendor/filter-hello');
});

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('the filter digest', () => {
  it('is the documented sha256 over the component\'s sha256, the sorted capabilities and the canonical schema', () => {
    const canonical = (v: unknown): string => Array.isArray(v) ? `[${v.map(canonical).join(',')}]`
      : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`
        : JSON.stringify(v);
    const text = [
      'ambit-filter-digest-v1',
      `wasm ${createHash('sha256').update(wasm).digest('hex')}`,
      `capabilities ${[...manifest.capabilities].sort().join(',')}`,
      `schema ${manifest.schema ? createHash('sha256').update(canonical(manifest.schema)).digest('hex') : 'none'}`,
      '',
    ].join('\n');
    expect(filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined }))
      .toBe(createHash('sha256').update(text).digest('hex'));
  });
});

describe('pins cover the manifest', () => {
  it('`ambit digest <package>` prints it', () => {
    const r = spawnSync(process.execPath, [path.join(REPO, 'runtime/dist/cli.js'), 'digest', HELLO_DIR], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined }));
  });

  it('a pinned filter loads; its binding and /config_dump carry the digest', async () => {
    const digest = filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined });
    const r = await resolveText(config(`{ ref: "@vendor/filter-hello", sha256: "${digest}" }`));
    expect(r.filters.get('/bindings/0/filters/0')!.artifact.digest).toBe(digest);
    const base64 = `sha256-${Buffer.from(digest, 'hex').toString('base64')}`;
    await expect(resolveText(config(`{ ref: "@vendor/filter-hello", sha256: "${base64}" }`))).resolves.toBeTruthy();
  });

  it('a package whose capabilities were widened after pinning is refused', async () => {
    const digest = filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined });
    // Same component, same manifest: only package.json asks for more.
    await fakePackage('@vendor/filter-widened', { capabilities: [...manifest.capabilities, 'shared', 'traffic'] });
    const e = await failure(config(`{ ref: "@vendor/filter-widened", sha256: "${digest}" }`));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
    expect(e.message).toContain('/bindings/0/filters/0/sha256');
    expect(e.message).toContain('the binding pins');
  });

  it('a package whose config schema was changed after pinning is refused', async () => {
    const digest = filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined });
    const dir = await fakePackage('@vendor/filter-loosened');
    await writeFile(path.join(dir, 'dist/schema.json'), JSON.stringify({ type: 'object' }));
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: '@vendor/filter-loosened', version: '1.0.0', ambit: { filter: 'dist/filter.wasm', schema: 'dist/schema.json' } }));
    const e = await failure(config(`{ ref: "@vendor/filter-loosened", sha256: "${digest}" }`));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
  });

  it('a pin of the component\'s sha256 alone is refused, with the digest to pin instead', async () => {
    const digest = filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined });
    const e = await failure(config(`{ ref: "@vendor/filter-hello", sha256: "${manifest.sha256}" }`));
    expect(e.code).toBe('AMBIT_ERR_INTEGRITY');
    expect(e.message).toContain(`pin the filter digest ${digest}`);
  });
});

describe('npm refs must be pinned', () => {
  it('an unpinned npm ref is refused, naming the digest to pin; allowUnpinned: true takes it', async () => {
    const digest = filterDigest({ sha256: manifest.sha256, capabilities: manifest.capabilities, schema: manifest.schema ?? undefined });
    const e = await failure(config('{ ref: "@vendor/filter-hello@^1" }'));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toContain('/bindings/0/filters/0/ref');
    expect(e.message).toContain(`sha256: ${digest}`);
    expect(e.message).toContain('allowUnpinned: true');
    await expect(resolveText(config('{ ref: "@vendor/filter-hello@^1", allowUnpinned: true }'))).resolves.toBeTruthy();
  });

  it('a path ref needs no pin (the operator\'s own files)', async () => {
    await expect(resolveText(config(`{ ref: ${JSON.stringify(HELLO_DIR)} }`))).resolves.toBeTruthy();
  });
});

describe('capabilities are the binding\'s grant', () => {
  it('a filter declaring more than granted is refused at load, naming the difference', async () => {
    const granted = manifest.capabilities.filter((c) => c !== 'log');
    expect(manifest.capabilities).toContain('log');
    const e = await failure(config(`{ ref: ${JSON.stringify(HELLO_DIR)}, capabilities: ${JSON.stringify(granted)} }`));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toContain('/bindings/0/filters/0/capabilities');
    expect(e.message).toMatch(/declares log beyond this binding's grant/);
  });

  it('a grant covering what the filter declares loads it', async () => {
    const r = await resolveText(config(`{ ref: ${JSON.stringify(HELLO_DIR)}, capabilities: ${JSON.stringify([...manifest.capabilities, 'shared'])} }`));
    expect(r.filters.get('/bindings/0/filters/0')!.binding.capabilities).toEqual(manifest.capabilities);
  });

  it('an unknown capability in a grant is a config error', async () => {
    const e = await failure(config(`{ ref: ${JSON.stringify(HELLO_DIR)}, capabilities: [log, root] }`));
    expect(e.code).toBe('AMBIT_ERR_MESH_CONFIG');
    expect(e.message).toContain('/bindings/0/filters/0/capabilities');
  });
});
