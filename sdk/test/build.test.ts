/**
 * `ambit-filter build`, run as the real CLI on temp copies of filter packages.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FilterManifest } from '@ambit/filter-sdk/host';
import { copyHello, makeTempRoot, useCacheIn, runCli, writeFilterPackage, type CliRun } from './helpers.js';

type Manifest = FilterManifest;

let root: string;
let cleanup: () => Promise<void>;
let restoreCache: () => void;

beforeAll(async () => {
  ({ root, cleanup } = await makeTempRoot('build'));
  restoreCache = useCacheIn(root);
});
afterAll(async () => {
  restoreCache?.();
  await cleanup?.();
});

describe('ambit-filter build: the hello example', () => {
  let dir: string;
  let run: CliRun;
  let wasm: Buffer;
  let manifest: Manifest;

  beforeAll(async () => {
    dir = await copyHello(path.join(root, 'hello'));
    run = await runCli(['build', dir]);
    if (run.code === 0) {
      wasm = await readFile(path.join(dir, 'dist/filter.wasm'));
      manifest = JSON.parse(await readFile(path.join(dir, 'dist/manifest.json'), 'utf8')) as Manifest;
    }
  });

  it('exits with 0 and prints each step', () => {
    expect(run.stderr).not.toContain('error');
    expect(run.code).toBe(0);
    const lines = run.stderr.trim().split('\n');
    expect(lines.every((l) => l.startsWith('ambit-filter: '))).toBe(true);
    expect(run.stderr).toContain('ambit-filter: type-checking src/filter.ts');
    expect(run.stderr).toContain('ambit-filter: bundling with esbuild');
    expect(run.stderr).toMatch(/ambit-filter: bundled [\d.]+ KiB of JavaScript/);
    expect(run.stderr).toContain('ambit-filter: filter "hello": phases connection, requestHeaders, responseHeaders; capabilities log, counters');
    expect(run.stderr).toContain('ambit-filter: pre-initializing the QuickJS engine with the filter');
    expect(run.stderr).toContain('ambit-filter: checking the component against the ambit:filter world');
    expect(run.stderr).toMatch(/ambit-filter: wrote dist\/filter\.wasm \([\d.]+ MiB, sha256 [0-9a-f]{12}…\)/);
    // The steps come in this order.
    const order = ['type-checking', 'bundling with esbuild', 'pre-initializing', 'checking the component', 'wrote'];
    const at = order.map((step) => lines.findIndex((l) => l.includes(step)));
    expect(at).toEqual([...at].sort((a, b) => a - b));
    expect(at.every((i) => i >= 0)).toBe(true);
  });

  it('writes a WebAssembly component (not a core module) to dist/filter.wasm', () => {
    expect([...wasm.subarray(0, 4)]).toEqual([0x00, 0x61, 0x73, 0x6d]);
    expect([...wasm.subarray(4, 8)]).toEqual([0x0d, 0x00, 0x01, 0x00]);
  });

  it('writes a manifest whose sha256 and size are those of the wasm', () => {
    expect(manifest.sha256).toBe(createHash('sha256').update(wasm).digest('hex'));
    expect(manifest.size).toBe(wasm.length);
    expect(manifest.wasm).toBe('filter.wasm');
  });

  it('writes the name, version, engine, world, capabilities and phases', () => {
    expect(manifest.name).toBe('hello');
    expect(manifest.package).toBe('@ambit/example-hello');
    expect(manifest.version).toBe('0.1.0');
    expect(manifest.engine).toBe('quickjs');
    expect(manifest.world).toBe('ambit:filter/filter@0.2.0');
    expect(manifest.capabilities).toEqual(['log', 'counters']);
    expect(manifest.phases).toEqual(['connection', 'requestHeaders', 'responseHeaders']);
  });

  it('writes the TypeBox config schema as JSON Schema, in the manifest and in dist/schema.json', async () => {
    const schema = manifest.schema!;
    expect(schema).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: {
        header: { type: 'string', default: 'x-ambit-hello', pattern: '^[a-z0-9-]+$' },
        maxAttempts: { type: 'integer', minimum: 1, maximum: 10, default: 3 },
        retryOn: { type: 'array', items: { type: 'integer' }, default: [503] },
        denyPathPrefixes: { type: 'array', default: ['/admin'] },
        requireIdentity: { type: 'boolean', default: false },
      },
    });
    const onDisk = JSON.parse(await readFile(path.join(dir, 'dist/schema.json'), 'utf8')) as unknown;
    expect(onDisk).toEqual(schema);
  });
});

describe('ambit-filter build: errors name the filter source file and line', () => {
  function expectBuildError(run: CliRun): void {
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('ambit-filter: error AMBIT_ERR_BUILD: ');
    expect(run.stderr).not.toMatch(/^\s+at .*node:internal/m);
    expect(run.stdout).toBe('');
  }

  it('reports a TypeScript type error at its line', async () => {
    const dir = await writeFilterPackage(path.join(root, 'type-error'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      'export default defineFilter({',
      '  onRequest(req) {',
      "    req.headers.set('x-a', 'b');",
      '    // the next line is line 7',
      "    const n: number = 'seven';",
      '    void n;',
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain('TypeScript found 1 error(s)');
    expect(run.stderr).toContain("src/filter.ts:7:11 - error TS2322: Type 'string' is not assignable to type 'number'.");
    // Nothing is written when the check fails.
    await expect(readFile(path.join(dir, 'dist/filter.wasm'))).rejects.toThrow(/ENOENT/);
  });

  it('reports a misuse of the SDK API as a type error', async () => {
    const dir = await writeFilterPackage(path.join(root, 'api-misuse'), [
      "import { defineFilter, respond } from '@ambit/filter-sdk';",
      '',
      'export default defineFilter({',
      '  onRequest() {',
      "    return respond('403');",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toMatch(/src\/filter\.ts:5:20 - error TS2345: Argument of type 'string' is not assignable to parameter of type 'number'/);
  });

  const syntaxError = (name: string): Promise<string> => writeFilterPackage(path.join(root, name), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      'export default defineFilter({',
      '  onRequest(req) {',
      "    req.headers.set('x-a', 'b');",
      '  },',
      '  onResponse(res) {',
      '    const x = {;',
      '  },',
      '});',
      '',
    ].join('\n'));

  it('reports a syntax error from esbuild at its line (type check skipped)', async () => {
    const dir = await syntaxError('syntax-error');
    const run = await runCli(['build', dir, '--no-typecheck']);
    expectBuildError(run);
    expect(run.stderr).not.toContain('type-checking');
    expect(run.stderr).toContain('bundling failed:');
    expect(run.stderr).toMatch(/src\/filter\.ts:8:\d+ - Expected identifier but found ";"/);
    // Relative to the filter package, whatever the working directory.
    expect(run.stderr).not.toContain(dir);
  });

  it('reports the same syntax error through the type check when it runs', async () => {
    const run = await runCli(['build', await syntaxError('syntax-error-checked')]);
    expectBuildError(run);
    expect(run.stderr).toMatch(/src\/filter\.ts:8:\d+ - error TS\d+:/);
  });

  it('maps a top-level throw back to the filter source line', async () => {
    const dir = await writeFilterPackage(path.join(root, 'top-level-throw'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      'const limits: Record<string, number> = {};',
      '',
      'for (const key of Object.keys({ a: 1 })) {',
      '  if (!(key in limits)) {',
      '    throw new Error(`no limit for ${key}`);',
      '  }',
      '}',
      '',
      'export default defineFilter({',
      '  onRequest(req) {',
      "    req.headers.set('x-limit', String(limits.a));",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain('no limit for a');
    expect(run.stderr).toMatch(/AMBIT_ERR_BUILD: src\/filter\.ts:7:\d+ - the filter's top-level code threw/);
    expect(run.stderr).not.toContain('.inspect-');
    expect(run.stderr).not.toContain('filter.bundle.js');
  });

  it('maps a throw inside the engine during pre-initialization back to the filter source line', async () => {
    // Node has Buffer, the QuickJS engine in the component does not: the module loads
    // in Node (where the build reads the definition) and throws only during the
    // engine's pre-initialization, where the position is one in the bundle.
    const dir = await writeFilterPackage(path.join(root, 'engine-throw'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      'const g = globalThis as unknown as { Buffer: { from(s: string): { length: number } } };',
      '',
      '// Only the engine in the component throws here:',
      "const greeting = g.Buffer.from('hello');",
      '',
      'export default defineFilter({',
      '  onRequest(req) {',
      "    req.headers.set('x-len', String(greeting.length));",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain('pre-initializing the QuickJS engine');
    expect(run.stderr).toMatch(/AMBIT_ERR_BUILD: src\/filter\.ts:6:\d+ - the filter could not be evaluated at build time/);
    expect(run.stderr).toContain("cannot read property 'from' of undefined");
    expect(run.stderr).toMatch(/\(src\/filter\.ts:6:\d+\)/);
    expect(run.stderr).not.toContain('filter.js:');
  });

  it('rejects a module without a default defineFilter export, naming the line of defineFilter', async () => {
    const dir = await writeFilterPackage(path.join(root, 'no-default'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      '// forgot `default`',
      'export const filter = defineFilter({',
      '  onRequest(req) {',
      "    req.headers.set('x-a', 'b');",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toMatch(/AMBIT_ERR_BUILD: src\/filter\.ts:4:\d+ - defineFilter\(\.\.\.\) is not the default export \(it exports filter\)/);
    expect(run.stderr).toContain('must `export default defineFilter({ ... })`');
  });

  it('rejects a default export that is not a filter, naming its line', async () => {
    const dir = await writeFilterPackage(path.join(root, 'default-not-filter'), [
      'const settings = { name: "x" };',
      '',
      'export default settings;',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toMatch(/AMBIT_ERR_BUILD: src\/filter\.ts:3:1 - the default export is not a filter/);
  });

  it('maps a defineFilter({}) without handlers (a throw inside the SDK) to the calling line', async () => {
    const dir = await writeFilterPackage(path.join(root, 'no-handlers'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      "export default defineFilter({ name: 'empty' });",
      '',
    ].join('\n'));
    const run = await runCli(['build', dir, '--no-typecheck']);
    expectBuildError(run);
    expect(run.stderr).toMatch(/AMBIT_ERR_BUILD: src\/filter\.ts:3:\d+ - the filter's top-level code threw/);
    expect(run.stderr).toContain('a filter needs at least one of onConnection, onRequest, onResponse');
  });

  it('rejects a folder without package.json', async () => {
    const dir = path.join(root, 'no-package');
    await mkdir(path.join(dir, 'src'), { recursive: true });
    await writeFile(path.join(dir, 'src/filter.ts'), "export default {};\n");
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain(`${dir} has no package.json`);
    expect(run.stderr).toContain('run ambit-filter build in a filter package folder');
  });

  it('rejects an unreadable package.json with AMBIT_ERR_BUILD, not a crash', async () => {
    const dir = path.join(root, 'bad-package');
    await mkdir(path.join(dir, 'src'), { recursive: true });
    await writeFile(path.join(dir, 'package.json'), '{ "name": "x", }\n');
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain(`cannot read ${path.join(dir, 'package.json')}`);
  });

  it('rejects a missing source file, naming it', async () => {
    const dir = await writeFilterPackage(path.join(root, 'no-source'), '', { ambit: { filter: 'dist/filter.wasm', source: 'src/main.ts' } });
    const run = await runCli(['build', dir]);
    expectBuildError(run);
    expect(run.stderr).toContain('filter source src/main.ts not found');
  });

  it('rejects an unknown engine', async () => {
    const dir = await copyHello(path.join(root, 'unknown-engine'));
    const run = await runCli(['build', dir, '--engine', 'v8']);
    expectBuildError(run);
    expect(run.stderr).toContain('unknown engine "v8": the SDK builds filters with quickjs');
  });
});

describe('ambit-filter build: reproducible, checked, complete', () => {
  it('gives the same bytes for the same source and SDK, wherever the package sits', async () => {
    const a = await copyHello(path.join(root, 'repro-a'));
    const b = await copyHello(path.join(root, 'elsewhere', 'repro-b'));
    const [ra, rb] = [await runCli(['build', a]), await runCli(['build', b])];
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    const sha = async (d: string) => createHash('sha256').update(await readFile(path.join(d, 'dist/filter.wasm'))).digest('hex');
    expect(await sha(a)).toBe(await sha(b));
    const again = await runCli(['build', a]);
    expect(again.code).toBe(0);
    expect(await sha(a)).toBe(await sha(b));
  });

  it('reports Date.now() and new Date() in a filter without the clock capability, at their TypeScript lines', async () => {
    const dir = await writeFilterPackage(path.join(root, 'clock-undeclared'), [
      "import { defineFilter, log } from '@ambit/filter-sdk';",
      '',
      'export default defineFilter({',
      "  capabilities: ['log'],",
      '  onRequest(req) {',
      "    req.headers.set('x-t', String(Date.now()));",
      "    log.info(new Date().toISOString());",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('AMBIT_ERR_BUILD');
    expect(run.stderr).toMatch(/src\/filter\.ts:6:\d+ - Date\.now\(\) reads the host's clock, which needs the "clock" capability/);
    expect(run.stderr).toMatch(/src\/filter\.ts:7:\d+ - new Date\(\) reads the host's clock/);
  });

  it('reports an SDK host function used without its capability', async () => {
    const dir = await writeFilterPackage(path.join(root, 'shared-undeclared'), [
      "import { defineFilter, shared as table } from '@ambit/filter-sdk';",
      '',
      'export default defineFilter({',
      '  onRequest() {',
      "    table.add('hits');",
      '  },',
      '});',
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/src\/filter\.ts:5:\d+ - shared\.add uses the host, which needs the "shared" capability; the filter does not declare it/);
  });

  it('writes dist/schema.json for a filter without config (it accepts only an empty object)', async () => {
    const dir = await writeFilterPackage(path.join(root, 'no-config'), [
      "import { defineFilter } from '@ambit/filter-sdk';",
      '',
      "export default defineFilter({ onRequest(req) { req.headers.set('x-plain', '1'); } });",
      '',
    ].join('\n'));
    const run = await runCli(['build', dir]);
    expect(run.code, run.stderr).toBe(0);
    const schema = JSON.parse(await readFile(path.join(dir, 'dist/schema.json'), 'utf8')) as { type: string; additionalProperties: boolean };
    expect(schema).toMatchObject({ type: 'object', additionalProperties: false, properties: {} });
  });
});
