/**
 * The wasmtime addon crate's own unit tests (header operations, shared storage under
 * concurrency), run with cargo in the same target folder as the build.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { REPO } from './fixtures.js';

const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;

describe.skipIf(!hasCargo)(`@ambit/native crate${hasCargo ? '' : ' (skipped: cargo is not installed)'}`, () => {
  it('passes cargo test', () => {
    const r = spawnSync('cargo', ['test', '--release', '--manifest-path', path.join(REPO, 'runtime/native/Cargo.toml')], {
      encoding: 'utf8',
      env: { ...process.env, CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache', 'ambit', 'cargo-target') },
      timeout: 600_000,
    });
    expect(r.status, r.stderr.slice(-4000)).toBe(0);
    expect(r.stdout).toMatch(/test result: ok\. \d+ passed; 0 failed/);
  }, 620_000);
});
