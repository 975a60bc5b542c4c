#!/usr/bin/env node
import { Command } from 'commander';
import { buildFilter, type GuestEngine } from './build.js';
import { AmbitError } from '../host/errors.js';

const program = new Command('ambit-filter').description('Build Ambit WebAssembly filters from TypeScript');

program
  .command('build')
  .argument('[dir]', 'filter package folder', '.')
  .option('--engine <engine>', 'JavaScript engine inside the component (quickjs)', 'quickjs')
  .option('--no-typecheck', 'skip the TypeScript check')
  .description('type-check, bundle and componentize a filter into dist/filter.wasm with a manifest')
  .action(async (dir: string, opts: { engine: GuestEngine; typecheck: boolean }) => {
    try {
      await buildFilter({ dir, engine: opts.engine, skipTypecheck: !opts.typecheck, log: (l) => process.stderr.write(`ambit-filter: ${l}\n`) });
    } catch (e) {
      if (e instanceof AmbitError) {
        process.stderr.write(`ambit-filter: error ${e.code}: ${e.message}\n`);
        process.exitCode = 1;
        return;
      }
      throw e;
    }
  });

await program.parseAsync();
