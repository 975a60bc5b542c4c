#!/usr/bin/env node
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
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
import { chooseDataPath, expectedEngine } from './node/data-path.js';
import type { MeshConfig } from './config/index.js';
import type { AccessLogDestination } from './telemetry/index.js';
import { ControllerSource } from './controlplane/source.js';
import { ControlPlaneError } from './controlplane/errors.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const runtimePackage = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
const program = new Command('ambit')
  .description('Ambit: an ambient service-mesh node proxy with WebAssembly filters')
  .version(runtimePackage.version, '-v, --version', 'print the version');

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
  .description('run a node proxy from a mesh config file (reloaded when it or a filter changes), or from the controller (--controller)')
  .option('-c, --config <file>', 'mesh config (YAML); see `ambit schema`. With --controller: node-local settings (proxy, capture) only')
  .addOption(new Option('--controller <host:port>', 'take the mesh config from the Ambit controller instead of a file').env('AMBIT_CONTROLLER'))
  .addOption(new Option('--controller-ca <file>', 'PEM roots verifying the controller (its ambit-ca-root ConfigMap); without: plaintext').env('AMBIT_CONTROLLER_CA'))
  .option('--controller-server-name <dns>', 'name in the controller\'s certificate', 'ambit-controller.ambit-system.svc')
  .addOption(new Option('--node-name <name>', 'this node (default: the host name)').env('NODE_NAME'))
  .addOption(new Option('--token-file <file>', 'the node proxy\'s ServiceAccount token').env('AMBIT_TOKEN_FILE').default('/var/run/secrets/kubernetes.io/serviceaccount/token'))
  .option('--filter-root <dir>', 'where filter packages named by npm spec are installed (with --controller)', process.cwd())
  .addOption(new Option('-w, --workers <n>', 'proxy processes sharing the listeners (default: proxy.workers, else the number of cores)').argParser((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--workers takes a whole number ≥ 1, got ${v}`);
    return n;
  }))
  .option('--access-log <dest>', 'stdout, off, or a file path', 'stdout')
  .option('--log-level <level>', 'trace, debug, info, warn, error', 'info')
  .action(async (opts: RunFlags) => {
    if (opts.controller) {
      await runFromController(opts);
      return;
    }
    if (!opts.config) throw new Error('ambit run needs --config <file> (a mesh config) or --controller <host:port>');
    const config = path.resolve(opts.config);
    const common = { config, accessLog: accessLog(opts.accessLog), logLevel: opts.logLevel };
    if (cluster.isWorker) {
      await runClusterWorker(common);
      return;
    }
    const { loadMeshConfig } = await import('./config/index.js');
    const workers = processCount(opts.workers, (await loadMeshConfig(config)).config);
    if (workers > 1) {
      const failure = await runClusterPrimary({ ...common, workers });
      if (failure) throw new Error(failure);
      return;
    }
    const node = await runNode(common);
    await untilSignal();
    await node.close();
  });

interface RunFlags {
  config?: string; workers?: number; accessLog: string; logLevel: string;
  controller?: string; controllerCa?: string; controllerServerName: string; nodeName?: string; tokenFile: string; filterRoot: string;
}

/**
 * How many processes serve the listeners: `--workers`, else `proxy.workers`, else one where the
 * native data path serves (its threads use the cores), else one per core (node:cluster workers
 * on the node data path).
 */
function processCount(flag: number | undefined, config: MeshConfig): number {
  const asked = flag ?? config.proxy.workers;
  const engine = expectedEngine(config);
  if (asked !== undefined) {
    // `dataPath: native` refuses workers, saying why, before any is forked.
    if (asked > 1) chooseDataPath(config, { engine, workers: asked });
    return asked;
  }
  return chooseDataPath(config, { engine, workers: 1 }).kind === 'native' ? 1 : os.availableParallelism();
}

/** `ambit run --controller`: one proxy process fed by the controller's stream. */
async function runFromController(opts: RunFlags): Promise<void> {
  if (opts.workers !== undefined && opts.workers > 1) {
    throw new ControlPlaneError('AMBIT_ERR_CONTROLLER_USAGE', '--controller runs one proxy process: drop --workers (or set it to 1)');
  }
  const node = opts.nodeName ?? os.hostname();
  const say = (level: 'info' | 'warn' | 'error', message: string) => process.stderr.write(`${JSON.stringify({ level, time: Date.now(), msg: message })}\n`);
  say('info', `controller ${opts.controller}: waiting for the config of node ${node}`);
  const source = await ControllerSource.connect({
    connection: {
      address: opts.controller!,
      tokenFile: opts.tokenFile,
      serverName: opts.controllerServerName,
      ...(opts.controllerCa ? { caFile: path.resolve(opts.controllerCa) } : {}),
    },
    node,
    filterRoot: path.resolve(opts.filterRoot),
    ...(opts.config ? { baseConfig: path.resolve(opts.config) } : {}),
    log: say,
  });
  const running = await runNode({ config: '', source, accessLog: accessLog(opts.accessLog), logLevel: opts.logLevel });
  await untilSignal();
  await running.close();
}

program
  .command('controller')
  .description('run the Kubernetes controller (the @ambit/controller package); `ambit controller --help` lists its flags')
  .allowUnknownOption(true)
  .helpOption(false)
  .argument('[args...]')
  .action(async (args: string[]) => {
    const specifier = '@ambit/controller/cli';
    let mod: { main(argv: string[]): Promise<void> };
    try {
      mod = (await import(specifier)) as typeof mod;
    } catch (e) {
      throw new Error(`ambit controller needs the @ambit/controller package (npm install @ambit/controller): ${(e as Error).message}`);
    }
    await mod.main(args);
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
  .command('validate')
  .description('check a mesh config without running it: schema, references, filters (resolved, integrity-checked) and their configs')
  .requiredOption('-c, --config <file>', 'mesh config (YAML)')
  .action(async (opts: { config: string }) => {
    const { validateConfigFile } = await import('./node/validate.js');
    const ok = await validateConfigFile(opts.config, (l) => process.stdout.write(`${l}\n`), (l) => process.stderr.write(`${l}\n`));
    if (!ok) process.exitCode = 1;
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
  // Coded errors whose message already starts with the code (a bad mesh config) are not prefixed twice.
  const code = e instanceof AmbitError || e instanceof ControlPlaneError ? e.code
    : typeof (e as { code?: unknown } | null)?.code === 'string' && String((e as { code: string }).code).startsWith('AMBIT_ERR_') ? (e as { code: string }).code : undefined;
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(code ? `ambit: error ${message.startsWith(code) ? message : `${code}: ${message}`}\n` : `ambit: ${message}\n`);
  process.exit(1);
}
