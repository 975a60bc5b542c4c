/**
 * `ambit-filter dev`: build the filter, run it in a one-node local mesh (from
 * `@ambit/runtime`, resolved from the filter package first) in front of an echo
 * upstream, print the curl to try, and rebuild + reload on every save. A failed rebuild
 * is reported and the last good build keeps serving.
 */
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildFilter, type GuestEngine } from './build.js';
import { buildStaleness } from './stale.js';
import { AmbitError, errorMessage } from '../host/errors.js';

export interface DevOptions {
  dir: string;
  port: number;
  adminPort: number;
  upstream?: string | undefined;
  /** JSON text, or a `.json` file holding the binding's config. */
  filterConfig?: string | undefined;
  engine?: GuestEngine;
  /** Build, start, run the curl once, stop. */
  once?: boolean;
  /** The proxy's log level (`info` shows the filter's log.info lines). Default `warn`. */
  logLevel?: string;
  out: (line: string) => void;
}

/** What this command needs of `@ambit/runtime/dev` (typed here: the SDK cannot depend on the runtime). */
interface DevMesh {
  readonly url: string;
  readonly adminUrl: string;
  readonly upstream: string;
  reload(): Promise<boolean>;
  close(): Promise<void>;
}
interface DevModule {
  startDevMesh(options: { filterDir: string; port?: number; adminPort?: number; upstream?: string; filterConfig?: unknown; logLevel?: string }): Promise<DevMesh>;
}

async function loadRuntime(dir: string): Promise<DevModule> {
  for (const base of [path.join(dir, 'package.json'), import.meta.url]) {
    let resolved: string;
    try {
      resolved = createRequire(base).resolve('@ambit/runtime/dev');
    } catch {
      continue;
    }
    return (await import(pathToFileURL(resolved).href)) as DevModule;
  }
  throw new AmbitError('AMBIT_ERR_FILTER_PACKAGE',
    'ambit-filter dev runs the filter in a local node proxy from @ambit/runtime, which is not installed here; run: npm install -D @ambit/runtime');
}

async function readFilterConfig(dir: string, spec: string | undefined): Promise<unknown> {
  let text: string | undefined = spec;
  let where = '--filter-config';
  if (spec !== undefined && !spec.trimStart().startsWith('{') && existsSync(path.resolve(spec))) {
    where = path.resolve(spec);
    text = await readFile(where, 'utf8');
  }
  if (text === undefined) {
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { ambit?: { devConfig?: unknown } };
    return pkg.ambit?.devConfig;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new AmbitError('AMBIT_ERR_CONFIG_INVALID', `AMBIT_ERR_CONFIG_INVALID: ${where} is not JSON (${errorMessage(e)}); give e.g. --filter-config '{"header":"x-demo"}' or a .json file`);
  }
}

/** One GET through the proxy on its own connection, as the printed curl does: status and the start of the body. */
function tryOnce(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        const flat = body.replace(/\s+/g, ' ').trim();
        resolve(`${res.statusCode ?? 0} ${flat.length > 200 ? `${flat.slice(0, 200)}…` : flat}`);
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (e) => resolve(`failed: ${errorMessage(e)}`));
  });
}

export async function runDev(options: DevOptions): Promise<void> {
  const dir = path.resolve(options.dir);
  const { out } = options;
  const build = async () => {
    const started = performance.now();
    const r = await buildFilter({ dir, engine: options.engine ?? 'quickjs' });
    return `${r.manifest.name}: ${r.manifest.phases.join(', ')} (sha256 ${r.manifest.sha256.slice(0, 12)}…), built in ${((performance.now() - started) / 1000).toFixed(1)} s`;
  };
  const stale = await buildStaleness(dir);
  out(`ambit-filter dev: ${path.relative(process.cwd(), dir) || '.'}: ${stale ? `building (${stale})…` : 'dist/ is up to date'}`);
  if (stale) out(`  ${await build()}`);
  const runtime = await loadRuntime(dir);
  const mesh = await runtime.startDevMesh({
    filterDir: dir, port: options.port, adminPort: options.adminPort,
    ...(options.upstream ? { upstream: options.upstream } : {}),
    filterConfig: await readFilterConfig(dir, options.filterConfig),
    logLevel: options.logLevel ?? 'warn',
  });
  const curl = `curl -si ${mesh.url}/hello`;
  out(`  node proxy ${mesh.url} → the filter → ${options.upstream ? 'upstream' : 'echo'} ${mesh.upstream}; admin ${mesh.adminUrl}`);
  out('Try it:');
  out(`  ${curl}`);
  out(`  → ${await tryOnce(`${mesh.url}/hello`)}`);
  if (options.once) {
    await mesh.close();
    return;
  }

  const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { ambit?: { source?: string } };
  const sourceDir = path.dirname(path.join(dir, pkg.ambit?.source ?? 'src/filter.ts'));
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const rebuild = () => {
    running = running.then(async () => {
      try {
        const what = await build();
        out(await mesh.reload() ? `rebuilt and reloaded: ${what}` : 'rebuilt, but the proxy refused it (see the error above); the previous build keeps serving');
      } catch (e) {
        out(`build failed; the previous build keeps serving:\n${e instanceof AmbitError ? `${e.code}: ` : ''}${errorMessage(e)}`);
      }
    });
  };
  const onChange = (_event: string, file: string | Buffer | null) => {
    const name = String(file ?? '');
    if (/(^|[\\/])(node_modules|dist|\.[^\\/]*)([\\/]|$)/.test(name)) return;
    clearTimeout(timer);
    timer = setTimeout(rebuild, 150);
  };
  const watchers: FSWatcher[] = [watch(sourceDir, { recursive: true }, onChange), watch(path.join(dir, 'package.json'), onChange)];
  out(`Watching ${path.relative(dir, sourceDir) || '.'}/ and package.json: saving rebuilds and reloads. Ctrl-C to stop.`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  for (const w of watchers) w.close();
  clearTimeout(timer);
  await running;
  await mesh.close();
}
