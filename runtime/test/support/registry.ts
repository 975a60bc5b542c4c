/**
 * A real npm registry on loopback for the distribution tests: verdaccio (a dev
 * dependency) as a child process with its own storage, no uplinks (nothing leaves the
 * machine), a user to publish with, and `npm publish` through the real npm CLI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './upstreams.js';
import { REPO } from '../fixtures.js';

const run = promisify(execFile);

export interface LocalRegistry {
  url: string;
  /** Verdaccio's storage folder (`<storage>/<@scope>/<name>/<name>-<version>.tgz`). */
  storage: string;
  /** An .npmrc pointing npm at this registry with a publish token. */
  npmrc: string;
  /** `npm publish <folder or .tgz>` to this registry (scripts off: what is published is what is there), with a dist-tag other than latest if given. */
  publish(target: string, tag?: string): Promise<void>;
  /** Stops the registry (the node proxies' "registry is down"). */
  stop(): Promise<void>;
}

export async function startRegistry(root: string): Promise<LocalRegistry> {
  const storage = path.join(root, 'storage');
  await mkdir(storage, { recursive: true });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = path.join(root, 'config.yaml');
  await writeFile(config, [
    `storage: ${storage}`,
    'auth:',
    `  htpasswd: { file: ${path.join(root, 'htpasswd')}, max_users: 10 }`,
    'uplinks: {}',
    'packages:',
    "  '**': { access: $all, publish: $authenticated, unpublish: $authenticated }",
    'web: { enable: false }',
    'log: { type: stdout, format: json, level: warn }',
    'publish: { allow_offline: true }',
    '',
  ].join('\n'));
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO, 'node_modules/verdaccio/bin/verdaccio'), '--config', config, '--listen', `127.0.0.1:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`verdaccio exited (${child.exitCode}): ${output}`);
    const up = await fetch(`${url}-/ping`).then((r) => r.ok, () => false);
    if (up) break;
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`verdaccio did not answer on ${url} within 60 s: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // A user (htpasswd registration, as `npm adduser` does) and its token for publishing.
  const res = await fetch(`${url}-/user/org.couchdb.user:ambit`, {
    method: 'PUT', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'ambit', password: 'ambit-test-password', type: 'user', roles: [], date: new Date().toISOString() }),
  });
  const { token } = (await res.json()) as { token?: string };
  if (!token) throw new Error(`verdaccio gave no token (${res.status})`);
  const npmrc = path.join(root, '.npmrc');
  await writeFile(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`);
  return {
    url, storage, npmrc,
    async publish(target: string, tag?: string) {
      const cwd = target.endsWith('.tgz') ? path.dirname(target) : target;
      await run('npm', ['publish', ...(target.endsWith('.tgz') ? [target] : []), '--ignore-scripts', '--userconfig', npmrc, '--registry', url, '--access', 'public', '--no-audit', '--no-fund', ...(tag ? ['--tag', tag] : [])], {
        cwd, env: { ...process.env, npm_config_cache: path.join(root, 'npm-cache') },
      });
    },
    async stop() {
      // Killed by a signal, a child has a signalCode and no exitCode.
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
