#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { buildFilter, type GuestEngine } from './build.js';
import { buildStaleness } from './stale.js';
import { runDev } from './dev.js';
import { AmbitError } from '../host/errors.js';

const sdkPackage = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const program = new Command('ambit-filter')
  .description('Build, test-drive and run Ambit WebAssembly filters written in TypeScript')
  .version(sdkPackage.version, '-v, --version', 'print the SDK version');

/** Coded errors print as `ambit-filter: error AMBIT_ERR_…: message` and exit 1; anything else is a bug and throws. */
function report(e: unknown): void {
  const sys = e as NodeJS.ErrnoException & { address?: string; port?: number };
  if (sys?.code === 'EADDRINUSE') {
    process.stderr.write(`ambit-filter: error: ${sys.address ?? '127.0.0.1'}:${sys.port ?? '?'} is in use (another ambit-filter dev or node proxy?); pass --port and --admin-port (0: any free port)\n`);
    process.exitCode = 1;
    return;
  }
  // By code, not class: `dev` loads @ambit/runtime, which may carry its own copy of the SDK.
  const coded = e instanceof AmbitError || (e instanceof Error && typeof sys.code === 'string' && sys.code.startsWith('AMBIT_ERR_'));
  if (!coded) throw e;
  const { code, message } = e as { code: string; message: string };
  process.stderr.write(`ambit-filter: error ${message.startsWith(code) ? '' : `${code}: `}${message}\n`);
  process.exitCode = 1;
}

const engineOption = new Option('--engine <engine>', 'JavaScript engine inside the component (quickjs, the only one)').default('quickjs');

program
  .command('build')
  .argument('[dirs...]', 'filter package folders', ['.'])
  .addOption(engineOption)
  .option('--no-typecheck', 'skip the TypeScript check')
  .option('--if-stale', 'build only packages whose dist/ is older than their source, package.json or the SDK')
  .description('type-check, bundle and componentize each filter into dist/filter.wasm with a manifest')
  .action(async (dirs: string[], opts: { engine: GuestEngine; typecheck: boolean; ifStale?: boolean }) => {
    for (const dir of dirs) {
      const label = path.relative(process.cwd(), path.resolve(dir)) || '.';
      const log = (l: string) => process.stderr.write(`ambit-filter: ${dirs.length > 1 ? `${label}: ` : ''}${l}\n`);
      if (opts.ifStale) {
        const why = await buildStaleness(dir);
        if (why === undefined) {
          log('up to date');
          continue;
        }
        log(`building (${why})`);
      }
      try {
        await buildFilter({ dir, engine: opts.engine, skipTypecheck: !opts.typecheck, log });
      } catch (e) {
        report(e);
        return;
      }
    }
  });

program
  .command('dev')
  .argument('[dir]', 'filter package folder', '.')
  .description('build the filter, run it in a one-node local mesh in front of an echo upstream, print the curl to try; rebuild and reload on save')
  .option('-p, --port <port>', 'the proxy\'s listener on 127.0.0.1', '15001')
  .option('--admin-port <port>', 'the admin API on 127.0.0.1 (metrics, /config_dump)', '15000')
  .option('--upstream <host:port>', 'send traffic here instead of the built-in echo server')
  .option('--filter-config <json|file>', 'the binding\'s config for the filter: JSON, or a .json/.yaml file (default: the package\'s "ambit.devConfig", else {})')
  .addOption(engineOption)
  .option('--log-level <level>', 'the proxy\'s log: trace, debug, info (shows the filter\'s log.info lines), warn, error', 'warn')
  .option('--once', 'build, start, run the printed curl once, then stop (for scripts and CI)')
  .action(async (dir: string, opts: { port: string; adminPort: string; upstream?: string; filterConfig?: string; engine: GuestEngine; logLevel: string; once?: boolean }) => {
    try {
      await runDev({
        dir, port: Number(opts.port), adminPort: Number(opts.adminPort), upstream: opts.upstream,
        filterConfig: opts.filterConfig, engine: opts.engine, logLevel: opts.logLevel, once: opts.once === true,
        out: (l) => process.stdout.write(`${l}\n`),
      });
    } catch (e) {
      report(e);
    }
  });

await program.parseAsync();
