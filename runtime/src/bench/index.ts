#!/usr/bin/env node
/**
 * `npm run bench`: the cost of Ambit filters on the V8 engine — QuickJS and
 * StarlingMonkey builds of the same filter against the same code as plain JS —
 * per call (raw and through the engine), per new instance, and in memory.
 * See bench/README.md. Not a test: nothing here asserts on timings.
 */
import os from 'node:os';
import path from 'node:path';
import { measureCalls } from './calls.js';
import { measureInstances } from './instances.js';
import { runMeta } from './meta.js';
import { parseOptions } from './options.js';
import { buildResults, renderReportText, writeResults } from './report.js';
import { prepareVariants } from './variants.js';

const started = performance.now();
const log = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

const opts = parseOptions(process.argv.slice(2));
const meta = runMeta(opts);
log(`work folder ${opts.workDir}${opts.quick ? ' (quick run)' : ''}`);
if (meta.loadAverage.start[0]! > meta.cores * 0.75) {
  log(`warning: load average is ${meta.loadAverage.start[0]!.toFixed(1)} on ${meta.cores} cores; other processes will skew the numbers`);
}

const { variants, skipped } = await prepareVariants(opts, log);
const calls = await measureCalls(opts, variants, log);
const instances = await measureInstances(opts, variants, log);

meta.durationSec = (performance.now() - started) / 1000;
meta.loadAverage.end = os.loadavg();
const results = buildResults(meta, variants, skipped, calls, instances);
process.stdout.write(`\n${renderReportText(results)}\n`);
const written = await writeResults(opts.resultsDir, results);
log(`wrote ${path.relative(process.cwd(), written.json)} and ${path.relative(process.cwd(), written.md)} (${meta.durationSec.toFixed(0)} s)`);
