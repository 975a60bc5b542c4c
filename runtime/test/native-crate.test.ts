/**
 * The wasmtime addon crate's own unit tests (header semantics, the read-only forwarded
 * request, output validation, which world a component is of, shared storage under
 * concurrency), run with cargo in the same target folder and for the same target triple
 * as the build (`napi build --platform`), so the dependencies the build compiled are reused.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { REPO } from './fixtures.js';

const hasCargo = !spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error;
/** The host's target triple, as `napi build --platform` builds for. */
const host = hasCargo ? /^host: (\S+)$/m.exec(spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout ?? '')?.[1] : undefined;

describe.skipIf(!hasCargo)(`@ambit/native crate${hasCargo ? '' : ' (skipped: cargo is not installed)'}`, () => {
  it('passes cargo test', () => {
    const target = host ? ['--target', host] : [];
    const r = spawnSync('cargo', ['test', '--release', ...target, '--manifest-path', path.join(REPO, 'runtime/native/Cargo.toml')], {
      encoding: 'utf8',
      env: { ...process.env, CARGO_TARGET_DIR: process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache', 'ambit', 'cargo-target') },
      timeout: 600_000,
    });
    expect(r.status, r.stderr.slice(-4000)).toBe(0);
    expect(r.stdout).toMatch(/test result: ok\. \d+ passed; 0 failed/);
  }, 620_000);
});
