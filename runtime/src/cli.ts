#!/usr/bin/env node
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { AmbitError } from './deps.js';
import { runFilterDemo } from './demo/filter-demo.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const program = new Command('ambit').description('Ambit: an ambient service-mesh node proxy with WebAssembly filters');

program
  .command('demo')
  .description('build the example filter and run sample traffic through the filter host')
  .action(async () => {
    await runFilterDemo(repoRoot, (l) => process.stdout.write(`${l}\n`));
  });

try {
  await program.parseAsync();
} catch (e) {
  if (e instanceof AmbitError) {
    process.stderr.write(`ambit: error ${e.code}: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
