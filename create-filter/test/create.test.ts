/**
 * `create-filter` (what `npm create @ambit/filter` runs): each template scaffolds a
 * package whose own `npm test` passes at once — the real build of its component and its
 * vitest test in the SDK harness — and bad input is refused with a reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CREATE_BIN, REPO, scratch, sh } from './support.js';

describe('create-filter', () => {
  let root: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => ({ dir: root, cleanup } = await scratch('create')));
  afterAll(async () => cleanup?.());

  it.each(['blank', 'policy', 'header-rewrite'] as const)('template %s: writes a filter package whose npm test passes', async (template) => {
    const made = await sh(process.execPath, [CREATE_BIN, `filter-${template}`, '--template', template, '--no-install'], { cwd: root });
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    const dir = path.join(root, `filter-${template}`);
    const files = (await readdir(dir, { recursive: true })).map(String).filter((f) => !f.includes(path.sep) || /^(src|test)\//.test(f)).sort();
    expect(files).toEqual(['.gitignore', 'README.md', 'package.json', 'src', 'src/filter.ts', 'test', 'test/filter.test.ts', 'tsconfig.json', 'vitest.config.ts']);
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as {
      name: string; ambit: Record<string, string>; files: string[]; scripts: Record<string, string>; devDependencies: Record<string, string>;
    };
    const sdkVersion = (JSON.parse(await readFile(path.join(REPO, 'sdk/package.json'), 'utf8')) as { version: string }).version;
    expect(pkg.name).toBe(`filter-${template}`);
    expect(pkg.ambit).toEqual({ filter: 'dist/filter.wasm', ...(template === 'blank' ? {} : { schema: 'dist/schema.json' }), source: 'src/filter.ts' });
    expect(pkg.devDependencies).toMatchObject({ '@ambit/filter-sdk': `^${sdkVersion}`, '@ambit/runtime': `^${sdkVersion}`, vitest: expect.any(String) });
    expect(await readFile(path.join(dir, 'src/filter.ts'), 'utf8')).toContain(`name: '${template}'`);

    const tested = await sh('npm', ['test'], { cwd: dir });
    expect(tested.code, tested.stdout + tested.stderr).toBe(0);
    expect(tested.stdout).toMatch(/Tests\s+\d+ passed/);
    expect(tested.stderr).toContain('wrote dist/filter.wasm');
    // The schema ships when there is a config; `files` names exactly what to publish.
    const dist = (await readdir(path.join(dir, 'dist'))).sort();
    expect(dist).toEqual(expect.arrayContaining(pkg.files.map((f) => path.basename(f))));
  });

  it('refuses a folder that is not empty, a bad package name and an unknown template', async () => {
    await mkdir(path.join(root, 'taken'), { recursive: true });
    await writeFile(path.join(root, 'taken/notes.txt'), 'mine');
    const taken = await sh(process.execPath, [CREATE_BIN, 'taken', '--template', 'blank', '--no-install'], { cwd: root });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^create-filter: .*taken exists and is not empty; choose a new folder name\n$/);
    const badName = await sh(process.execPath, [CREATE_BIN, 'x', '--name', 'Bad Name', '--no-install'], { cwd: root });
    expect(badName.stderr).toMatch(/"Bad Name" is not a valid npm package name/);
    const badTemplate = await sh(process.execPath, [CREATE_BIN, 'y', '--template', 'waf', '--no-install'], { cwd: root });
    expect(badTemplate.code).toBe(1);
    expect(badTemplate.stderr).toBe('create-filter: unknown template "waf"; choose one of: blank, policy, header-rewrite\n');
  });

  it('takes a scoped name: the folder, the package name and the filter\'s short name', async () => {
    const made = await sh(process.execPath, [CREATE_BIN, 'canary', '--name', '@acme/filter-canary', '--template', 'policy', '--no-install'], { cwd: root });
    expect(made.code, made.stderr).toBe(0);
    const pkg = JSON.parse(await readFile(path.join(root, 'canary/package.json'), 'utf8')) as { name: string };
    expect(pkg.name).toBe('@acme/filter-canary');
    expect(await readFile(path.join(root, 'canary/src/filter.ts'), 'utf8')).toContain("name: 'canary'");
  });
});
