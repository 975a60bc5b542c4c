/**
 * What a fresh clone and a published package give their users:
 * - the CLIs' bins are committed shims (so npm links them before dist/ is built) and run;
 * - `npm pack` of the SDK holds what it runs and nothing of the repo's (its source maps
 *   point only at files it ships), and `npm pack` of each filter package holds exactly the
 *   component, its schema, its manifest, package.json and README.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './helpers.js';

const run = promisify(execFile);

async function packedFiles(dir: string): Promise<string[]> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir });
  return (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path).sort();
}

const FILTER_PACKAGES = ['filters/authz', 'filters/fault', 'filters/headers', 'filters/mtls', 'filters/ratelimit', 'filters/retry', 'filters/traffic-split', 'examples/filters/hello'];

describe('the CLIs in a clone', () => {
  const bins = [
    { bin: 'ambit-filter', shim: 'sdk/bin/ambit-filter.js', pkg: 'sdk/package.json' },
    { bin: 'ambit', shim: 'runtime/bin/ambit.js', pkg: 'runtime/package.json' },
    { bin: 'create-filter', shim: 'create-filter/bin/create-filter.js', pkg: 'create-filter/package.json' },
  ];

  it.each(bins)('$bin is linked to a committed shim and prints its version', async ({ bin, shim, pkg }) => {
    const { stdout: tracked } = await run('git', ['ls-files', '--error-unmatch', shim], { cwd: REPO });
    expect(tracked.trim()).toBe(shim);
    expect(realpathSync(path.join(REPO, 'node_modules/.bin', bin))).toBe(path.join(REPO, shim));
    const { stdout } = await run(path.join(REPO, 'node_modules/.bin', bin), ['--version'], { cwd: REPO });
    expect(stdout.trim()).toBe((JSON.parse(readFileSync(path.join(REPO, pkg), 'utf8')) as { version: string }).version);
  });
});

describe('npm pack', () => {
  it('of the SDK: bin, dist, src, wit, the engine module and docs; every source map points at a shipped file', async () => {
    const files = await packedFiles(path.join(REPO, 'sdk'));
    const outside = files.filter((f) => !/^(bin|dist|src|wit)\//.test(f) && !['README.md', 'package.json', 'engine/quickjs.wasm', 'engine/README.md'].includes(f));
    expect(outside).toEqual([]);
    expect(files.filter((f) => f.endsWith('.tsbuildinfo') || f.includes('/test/'))).toEqual([]);
    for (const must of ['bin/ambit-filter.js', 'dist/index.js', 'dist/index.d.ts', 'dist/build/cli.js', 'dist/testing/index.js', 'dist/guest-index.js', 'wit/filter.wit', 'engine/quickjs.wasm']) {
      expect(files).toContain(must);
    }
    const shipped = new Set(files);
    const dangling: string[] = [];
    for (const map of files.filter((f) => f.endsWith('.map'))) {
      const { sources } = JSON.parse(readFileSync(path.join(REPO, 'sdk', map), 'utf8')) as { sources: string[] };
      for (const s of sources) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(map), s));
        if (!shipped.has(target)) dangling.push(`${map} → ${s}`);
      }
    }
    expect(dangling).toEqual([]);
  });

  it('of create-filter: its bin, compiled CLI, sources and templates', async () => {
    const files = await packedFiles(path.join(REPO, 'create-filter'));
    expect(files.filter((f) => !/^(bin|dist|src|templates)\//.test(f) && !['README.md', 'package.json'].includes(f))).toEqual([]);
    for (const t of ['blank', 'policy', 'header-rewrite']) expect(files).toContain(`templates/${t}/src/filter.ts`);
  });

  describe('of each filter package: the component, schema and manifest, nothing else', () => {
    beforeAll(() => {
      const missing = FILTER_PACKAGES.filter((d) => !existsSync(path.join(REPO, d, 'dist/filter.wasm')));
      if (missing.length) throw new Error(`not built: ${missing.join(', ')} (npm run build builds them)`);
    });
    it.each(FILTER_PACKAGES)('%s', async (dir) => {
      const files = await packedFiles(path.join(REPO, dir));
      const expected = ['dist/filter.wasm', 'dist/manifest.json', 'dist/schema.json', 'package.json'];
      if (existsSync(path.join(REPO, dir, 'README.md'))) expected.unshift('README.md');
      expect(files).toEqual(expected);
      const pkg = JSON.parse(readFileSync(path.join(REPO, dir, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
      expect(pkg.scripts?.prepack).toBe('ambit-filter build .');
    });
  });
});
