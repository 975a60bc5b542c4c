#!/usr/bin/env node
/**
 * `npm run bench`: first the filter ABI — the measured filter's request phase built for
 * the 0.1 and 0.2 worlds, on V8 and wasmtime, in-thread; the six built-ins on wasmtime;
 * a fresh instance and its memory; fusing a chain — against the goals of issue 12; then
 * the built-ins on the V8 engine, the proxy, mTLS between proxies and capture.
 * See bench/README.md. Not a test: nothing here asserts on timings.
 */
import os from 'node:os';
import path from 'node:path';
import { measureAbi } from './abi.js';
import { runMeta } from './meta.js';
import { parseOptions } from './options.js';
import { renderReportText, writeResults } from './report.js';

const started = performance.now();
const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

const opts = parseOptions(process.argv.slice(2));
const meta = runMeta(opts);
log(`work folder ${opts.workDir}${opts.quick ? ' (quick run)' : ''}`);

const abi = await measureAbi(opts, meta, log);
meta.durationSec = (performance.now() - started) / 1000;
meta.loadAverage.end = os.loadavg();
const results = { meta, abi };
process.stdout.write(`\n${renderReportText(results)}\n`);
const written = await writeResults(opts.resultsDir, results);
log(`wrote ${path.relative(process.cwd(), written.json)} and ${path.relative(process.cwd(), written.md)} (${meta.durationSec.toFixed(0)} s)`);

// The built-in filters: each one's call time, and the six-filter chain per phase.
const { renderBuiltinBench, runBuiltinFilterBench, writeBuiltinBench } = await import('./builtins.js');
const builtins = await runBuiltinFilterBench({ phases: opts.quick ? 600 : 3000, log });
process.stdout.write(`\n${renderBuiltinBench(builtins)}\n`);
await writeBuiltinBench(builtins);

// Then the proxy: direct, L4, L7 without and with filters, nginx — side by side.
const { runProxyBench } = await import('./proxy/index.js');
await runProxyBench({ seconds: opts.quick ? 3 : undefined });

// Then mTLS between two node proxies: HBONE against plaintext, handshakes.
const { runMeshBench } = await import('./mesh/index.js');
await runMeshBench({ seconds: opts.quick ? 3 : undefined });
// Then capture: eBPF (with and without the sockhash short circuit) against nftables and direct.
const { runCaptureBench } = await import('./capture/index.js');
await runCaptureBench({ quick: opts.quick });
