// The controller and node proxy images: built from Debian packages, Node.js's npm package and this
// checkout by images/build.sh (mmdebstrap + buildah), then run with podman: each entrypoint answers
// --version, the node image loads the eBPF loader addon on its libbpf and has nft.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const execFileP = promisify(execFile);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUILD = path.join(REPO, 'images/build.sh');
const VERSION = (JSON.parse(spawnSync('cat', [path.join(REPO, 'runtime/package.json')], { encoding: 'utf8' }).stdout) as { version: string }).version;

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const tool of ['mmdebstrap', 'buildah', 'podman', 'runc']) {
    if (spawnSync(tool, ['--version']).error) return `\`${tool}\` is not installed: apt-get install -y mmdebstrap buildah podman runc`;
  }
  if (!existsSync(path.join(REPO, 'runtime/dist/cli.js'))) return 'the project is not built (npm run build)';
  return undefined;
}

const skip = skipReason();
describe.skipIf(skip !== undefined)(`images${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let store = '';
  let flags: string[] = [];
  let names: string[] = [];

  // podman's defaults here: crun refuses hybrid cgroup hosts, and its default rlimits exceed this
  // machine's hard limits; runc with explicit rlimits runs the images as they are.
  const podman = async (args: string[]) => {
    const { stdout } = await execFileP('podman', [...flags, '--runtime', 'runc', ...args], { encoding: 'utf8', timeout: 120_000, maxBuffer: 16 << 20 });
    return stdout.trim();
  };
  const run = (image: string, args: string[], entrypoint?: string) => podman(['run', '--rm', '--network', 'none', '--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=4096:4096',
    ...(entrypoint ? ['--entrypoint', entrypoint] : []), image, ...args]);

  beforeAll(async () => {
    store = await mkdtemp(path.join(os.tmpdir(), 'ambit-images-'));
    flags = ['--root', path.join(store, 'root'), '--runroot', path.join(store, 'run'), '--storage-driver', 'overlay'];
    const { stdout } = await execFileP(BUILD, [], { encoding: 'utf8', timeout: 1_200_000, maxBuffer: 64 << 20, env: { ...process.env, AMBIT_BUILDAH_FLAGS: flags.join(' ') } });
    names = stdout.trim().split('\n');
  }, 1_300_000);

  afterAll(async () => {
    if (store) {
      await execFileP('buildah', [...flags, 'rmi', '--all', '--force']).catch(() => undefined);
      await rm(store, { recursive: true, force: true });
    }
  });

  it('names the images as the chart\'s defaults do', async () => {
    expect(names).toEqual([`localhost/ambit/controller:${VERSION}`, `localhost/ambit/node:${VERSION}`]);
    const printed = (await execFileP(BUILD, ['--print-names'], { encoding: 'utf8' })).stdout.trim().split('\n');
    expect(printed).toEqual(names);
  });

  it('each entrypoint answers --version', async () => {
    for (const image of names) expect(await run(image, ['--version'])).toBe(VERSION);
  }, 300_000);

  it('the controller image runs as a non-root user, the node image as root (its capabilities come from the pod)', async () => {
    const user = async (image: string) => JSON.parse(await podman(['image', 'inspect', '--format', '{{json .Config.User}}', image])) as string;
    expect(await user(names[0]!)).toBe('65532:65532');
    expect(await run(names[0]!, ['-c', 'id -u'], '/bin/sh')).toBe('65532');
    expect(await user(names[1]!)).toBe('0:0');
  }, 300_000);

  it('the node image loads the eBPF loader addon on its libbpf, carries the compiled programs, the built-in filters and nft', async () => {
    // One container for every look.
    const script = [
      'node --input-type=module -e "const b = await import(\'@ambit/addon/bpf\'); console.log(JSON.stringify({ available: b.available, reason: b.unavailableReason ?? null }))"',
      'echo "--"; ls /opt/ambit/bpf',
      'echo "--"; ls /opt/ambit/node_modules/@ambit/filter-authz/dist/filter.wasm /opt/ambit/node_modules/@ambit/filter-ratelimit/package.json',
      'echo "--"; nft --version',
      // The CLI's modules and production dependencies are all in the image.
      'echo "--"; ambit schema | head -c 100000 | grep -c \'"capture"\'',
    ].join('; ');
    const [addon, objects, filters, nft, schema] = (await run(names[1]!, ['-ec', script], '/bin/sh')).split('\n--\n');
    expect(JSON.parse(addon!)).toEqual({ available: true, reason: null });
    expect(objects!.split('\n').sort()).toEqual(['connect.bpf.o', 'peername.bpf.o', 'redirect.bpf.o', 'sockops.bpf.o', 'sockopt.bpf.o']);
    expect(filters).toBe('/opt/ambit/node_modules/@ambit/filter-authz/dist/filter.wasm\n/opt/ambit/node_modules/@ambit/filter-ratelimit/package.json');
    expect(nft).toMatch(/^nftables v1\./);
    expect(Number(schema)).toBeGreaterThan(0);
  }, 300_000);
});
