#!/usr/bin/env node
import cluster from 'node:cluster';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { AmbitError, loadFilterArtifact } from './deps.js';
import { meshConfigJsonSchema } from './config/index.js';
import { runFilterDemo } from './demo/filter-demo.js';
import { showLocalMesh, startLocalMesh } from './demo/local-mesh.js';
import { runClusterPrimary, runClusterWorker } from './node/cluster.js';
import { runNode } from './node/run.js';
import type { AccessLogDestination } from './telemetry/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const program = new Command('ambit').description('Ambit: an ambient service-mesh node proxy with WebAssembly filters');

function accessLog(v: string): AccessLogDestination {
  return v === 'stdout' || v === 'off' ? v : { file: path.resolve(v) };
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

program
  .command('run')
  .description('run a node proxy from a mesh config file (reloaded when it or a filter changes)')
  .requiredOption('-c, --config <file>', 'mesh config (YAML); see `ambit schema`')
  .addOption(new Option('-w, --workers <n>', 'proxy processes sharing the listeners (default: proxy.workers, else the number of cores)').argParser((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--workers takes a whole number ≥ 1, got ${v}`);
    return n;
  }))
  .option('--access-log <dest>', 'stdout, off, or a file path', 'stdout')
  .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
  .action(async (opts: { config: string; workers?: number; accessLog: string; logLevel: string }) => {
    const config = path.resolve(opts.config);
    const common = { config, accessLog: accessLog(opts.accessLog), logLevel: opts.logLevel };
    if (cluster.isWorker) {
      await runClusterWorker(common);
      return;
    }
    const { loadMeshConfig } = await import('./config/index.js');
    const workers = opts.workers ?? (await loadMeshConfig(config)).config.proxy.workers ?? os.availableParallelism();
    if (workers > 1) {
      const failure = await runClusterPrimary({ ...common, workers });
      if (failure) throw new Error(failure);
      return;
    }
    const node = await runNode(common);
    await untilSignal();
    await node.close();
  });

const capture = program.command('capture').description('traffic capture (eBPF or nftables) of enrolled workloads');
capture
  .command('uninstall')
  .description('remove everything capture installed: pinned eBPF links and maps, the nftables table')
  .option('-c, --config <file>', 'mesh config whose capture.pinDir and capture.nftTable to use (default: the defaults)')
  .action(async (opts: { config?: string }) => {
    const { loadMeshConfig } = await import('./config/index.js');
    const { uninstallCapture } = await import('./capture/index.js');
    const settings = opts.config
      ? (await loadMeshConfig(path.resolve(opts.config))).config
      : { capture: { mode: 'auto' as const, sockhash: true, nftTable: 'ambit' } };
    const removed = await uninstallCapture(settings);
    const out = (l: string) => process.stdout.write(`${l}\n`);
    out(removed.ebpf.length ? `eBPF: removed ${removed.ebpf.join(', ')}` : 'eBPF: nothing pinned');
    out(removed.nftTable ? `nftables: removed table inet ${settings.capture.nftTable}` : `nftables: no table inet ${settings.capture.nftTable}`);
  });

program
  .command('schema')
  .description('print the mesh config\'s JSON Schema')
  .action(() => {
    process.stdout.write(`${JSON.stringify(meshConfigJsonSchema(), null, 2)}\n`);
  });

program
  .command('digest')
  .description('print the filter digest of a filter package folder or .wasm file: what a binding\'s sha256 pins (component, capabilities, schema)')
  .argument('<ref>', 'a filter package folder (e.g. node_modules/@vendor/filter-x) or a .wasm file with its manifest.json')
  .action(async (ref: string) => {
    const artifact = await loadFilterArtifact(ref);
    process.stdout.write(`${artifact.digest}\n`);
  });

program
  .command('local')
  .description('run the local mesh of examples/local (what `npm start` runs)')
  .option('--once', 'show the demo requests, then stop')
  .action(async (opts: { once?: boolean }) => {
    const out = (l: string) => process.stdout.write(`${l}\n`);
    const mesh = await startLocalMesh(repoRoot, out);
    try {
      await showLocalMesh(out);
      if (!opts.once) {
        out('The mesh keeps running; edit examples/local/mesh.yaml or the filter and it reloads. Ctrl-C to stop.');
        await untilSignal();
      }
    } finally {
      await mesh.close();
    }
  });

program
  .command('demo')
  .description('build the example filter and run sample traffic through the filter host, no proxy')
  .action(async () => {
    await runFilterDemo(repoRoot, (l) => process.stdout.write(`${l}\n`));
  });

try {
  await program.parseAsync();
} catch (e) {
  process.stderr.write(e instanceof AmbitError ? `ambit: error ${e.code}: ${e.message}\n` : `ambit: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
}
