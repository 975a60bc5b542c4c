#!/usr/bin/env node
/**
 * `npm run bench`: the cost of Ambit filters — QuickJS and StarlingMonkey builds of
 * the same filter against the same code as plain JS — per call (raw and through the
 * V8 engine), per new instance, and in memory; then the V8 and wasmtime engines side
 * by side on the same components.
 * See bench/README.md. Not a test: nothing here asserts on timings.
 */
import os from 'node:os';
import path from 'node:path';
import { measureCalls } from './calls.js';
import { measureEngines } from './engines.js';
import { measureInstances } from './instances.js';
import { cpuSnapshot, otherCores, sampleOtherCores } from './machine-load.js';
import { BUSY_CORES, runMeta } from './meta.js';
import { parseOptions } from './options.js';
import { buildResults, renderReportText, writeResults } from './report.js';
import { prepareVariants } from './variants.js';

const started = performance.now();
const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

const opts = parseOptions(process.argv.slice(2));
const meta = runMeta(opts);
log(`work folder ${opts.workDir}${opts.quick ? ' (quick run)' : ''}`);

const { variants, skipped } = await prepareVariants(opts, log);
meta.otherCores.before = await sampleOtherCores(1000);
if (meta.otherCores.before > BUSY_CORES) {
  log(`warning: other processes are using ${meta.otherCores.before.toFixed(1)} of ${meta.cores} cores; they will skew the numbers`);
}
const callsStart = cpuSnapshot();
const calls = await measureCalls(opts, variants, log);
meta.otherCores.duringCalls = otherCores(callsStart, cpuSnapshot());
const instances = await measureInstances(opts, variants, log);
const engines = await measureEngines(opts, variants, instances, log);

meta.durationSec = (performance.now() - started) / 1000;
meta.loadAverage.end = os.loadavg();
const results = buildResults(meta, variants, skipped, calls, instances, engines);
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
