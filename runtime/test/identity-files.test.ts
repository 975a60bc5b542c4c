/**
 * The mesh CA's folder and files are checked for owner and mode when they are loaded: a key
 * another user can read (or a folder or certificate another user can write) is refused, naming
 * the path and the command that fixes it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CertificateAuthority } from '../src/identity/index.js';
import { loadCa } from '../src/node/identity.js';

const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

describe('CA files are checked at load', () => {
  let base: string;
  let n = 0;
  /** A folder with a generated CA (0700, key 0600, certificates 0644). */
  async function caDir(): Promise<string> {
    const dir = path.join(base, `ca-${n++}`);
    await CertificateAuthority.loadOrCreate(dir, { trustDomain: 'mesh.test' });
    return dir;
  }
  const load = (dir: string) => loadCa({ ca: { dir } } as Parameters<typeof loadCa>[0], 'mesh.test', base);
  const loadFiles = (dir: string) => loadCa({ ca: { certFile: path.join(dir, 'ca-cert.pem'), keyFile: path.join(dir, 'ca-key.pem') } } as Parameters<typeof loadCa>[0], 'mesh.test', base);

  beforeAll(async () => {
    base = await mkdtemp(path.join(os.tmpdir(), 'ambit-ca-files-'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('loads a folder the proxy made', async () => {
    const dir = await caDir();
    await expect(load(dir)).resolves.toMatchObject({ source: `dir ${dir}` });
    await expect(loadFiles(dir)).resolves.toBeTruthy();
  });

  it('refuses a key readable by group or others, naming the path and chmod 600', async () => {
    const dir = await caDir();
    const key = path.join(dir, 'ca-key.pem');
    await chmod(key, 0o644);
    for (const attempt of [load, loadFiles]) {
      const e = await attempt(dir).then(() => undefined, (err: unknown) => err as Error & { code?: string });
      expect(e?.code).toBe('AMBIT_ERR_IDENTITY');
      expect(e?.message).toContain(key);
      expect(e?.message).toContain(`chmod 600 ${key}`);
    }
  });

  it('refuses a CA folder or certificate writable by group or others', async () => {
    const dir = await caDir();
    await chmod(dir, 0o777);
    await expect(load(dir)).rejects.toThrow(new RegExp(`${dir}.*writable by group or others.*chmod 700 ${dir}`));
    await chmod(dir, 0o700);
    const cert = path.join(dir, 'ca-cert.pem');
    await chmod(cert, 0o666);
    await expect(load(dir)).rejects.toThrow(new RegExp(`${cert}.*writable by group or others.*chmod 644 ${cert}`));
  });

  it.skipIf(!isRoot)('refuses a key owned by another user', async () => {
    const dir = await caDir();
    const key = path.join(dir, 'ca-key.pem');
    await chown(key, NOBODY, NOBODY);
    await expect(load(dir)).rejects.toThrow(new RegExp(`${key}.*owned by uid ${NOBODY}.*chown`));
  });
});
