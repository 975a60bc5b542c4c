#!/usr/bin/env node
// Builds the wasmtime engine addon with the napi-rs CLI when cargo is present.
//
// - The binary goes to npm/<platform>/ (the per-platform package that @ambit/native
//   lists as an optional dependency, napi-rs style).
// - Cargo's target folder lives outside the checkout (default ~/.cache/ambit/cargo-target,
//   or $CARGO_TARGET_DIR), so a fresh clone on the same machine builds incrementally.
// - Without cargo the build is skipped with one line; the node then runs filters on V8.
//   With cargo, a failed build fails (set AMBIT_NATIVE_OPTIONAL=1 to skip instead).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const optional = process.env.AMBIT_NATIVE_OPTIONAL === '1';

function skip(why) {
  console.log(`@ambit/native: not built (${why}); filters run on the V8 engine`);
  process.exit(0);
}

if (process.env.AMBIT_SKIP_NATIVE === '1') skip('AMBIT_SKIP_NATIVE=1');
if (spawnSync('cargo', ['--version'], { stdio: 'ignore' }).error) skip('cargo not found: install Rust to build the wasmtime engine');

const platform = `${process.platform}-${process.arch}${process.platform === 'linux' ? '-gnu' : ''}`;
const outDir = path.join('npm', platform);
if (!existsSync(path.join(here, outDir, 'package.json'))) skip(`no binary package for ${platform} (npm/${platform})`);

const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache', 'ambit', 'cargo-target');
const napi = path.join(here, 'node_modules', '.bin', 'napi');
const cli = existsSync(napi) ? napi : path.join(here, '..', '..', 'node_modules', '.bin', 'napi');
const r = spawnSync(cli, [
  'build', '--platform', '--release',
  '--target-dir', targetDir,
  '--output-dir', outDir,
  // The loader (index.js) is kept in the package; the types (index.d.ts) are generated from the Rust API.
  '--no-js', '--dts', '../../index.d.ts',
], { cwd: here, stdio: 'inherit', env: { ...process.env, CARGO_BUILD_JOBS: process.env.CARGO_BUILD_JOBS ?? String(os.availableParallelism()) } });
if (r.status !== 0) {
  const why = r.error ? r.error.message : `napi build exited with ${r.status}`;
  if (optional) skip(`build failed: ${why}`);
  console.error(`@ambit/native: build failed (${why}); set AMBIT_NATIVE_OPTIONAL=1 to skip it and use the V8 engine`);
  process.exit(1);
}
