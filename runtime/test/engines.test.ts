/**
 * Every package of the repository asks for a Node.js with the 2024 HTTP/2 fixes (20.12.1: the
 * CONTINUATION flood, CVE-2024-27983), and the running one has them.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { REPO } from './fixtures.js';

const FLOOR = '20.12.1';

/** package.json files of the root and its workspaces (globs of one `*`, as the root lists them). */
function packageFiles(): string[] {
  const root = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { workspaces: string[] };
  const dirs = root.workspaces.flatMap((w) => w.endsWith('/*')
    ? readdirSync(path.join(REPO, w.slice(0, -2)), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => path.join(w.slice(0, -2), d.name))
    : [w]);
  return ['package.json', ...dirs.map((d) => path.join(d, 'package.json'))];
}

describe('engines.node', () => {
  it.each(packageFiles())(`%s asks for Node.js >= ${FLOOR}`, (file) => {
    const pkg = JSON.parse(readFileSync(path.join(REPO, file), 'utf8')) as { engines?: { node?: string } };
    const range = pkg.engines?.node;
    expect(range, `${file} has no engines.node`).toBeTruthy();
    expect(semver.gte(semver.minVersion(range!)!, FLOOR), `${file}: ${range}`).toBe(true);
  });

  it('the lock file says the same', () => {
    const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string } }> };
    for (const file of packageFiles()) {
      const dir = path.dirname(file);
      expect(lock.packages[dir === '.' ? '' : dir]?.engines?.node, dir).toBe(`>=${FLOOR}`);
    }
  });

  it(`this Node.js is ${FLOOR} or later`, () => {
    expect(semver.gte(process.versions.node, FLOOR)).toBe(true);
  });
});
