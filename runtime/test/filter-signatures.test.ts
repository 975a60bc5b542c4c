/**
 * What the registry source checks besides SRI: npm registry signatures (ECDSA P-256 over
 * `<name>@<version>:<integrity>`, keys from `/-/npm/v1/keys`), integrity strings, and
 * tarballs that try to leave their package folder. Real keys made here with node:crypto
 * and real tarballs made with `tar`; the local registry of filter-registry.test.ts
 * (verdaccio) does not sign, so signing is exercised here.
 */
import { describe, expect, it } from 'vitest';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { create } from 'tar';
import { checkSignatures, type RegistryKey } from '../src/config/registry/signatures.js';
import { checkIntegrity, integrityOf, parseIntegrity } from '../src/config/registry/integrity.js';
import { readTarball } from '../src/config/registry/tarball.js';

function keyPair(keyid: string, expires: string | null = null) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const key: RegistryKey = { keyid, keytype: 'ecdsa-sha2-nistp256', scheme: 'ecdsa-sha2-nistp256', key: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'), expires };
  return { key, sign: (msg: string) => sign('sha256', Buffer.from(msg), privateKey).toString('base64') };
}

describe('registry signatures', () => {
  const spec = { name: '@acme/filter-x', version: '1.1.0', integrity: integrityOf(Buffer.from('the tarball')) };
  const message = `${spec.name}@${spec.version}:${spec.integrity}`;

  it('verifies a signature made with a registry key', () => {
    const k = keyPair('SHA256:key-1');
    expect(checkSignatures(spec, [{ keyid: 'SHA256:key-1', sig: k.sign(message) }], [k.key], '2026-01-01T00:00:00Z'))
      .toEqual({ status: 'verified', keyid: 'SHA256:key-1' });
  });

  it('refuses a signature over another integrity (the tarball was swapped and its integrity with it)', () => {
    const k = keyPair('SHA256:key-1');
    const forged = { ...spec, integrity: integrityOf(Buffer.from('another tarball')) };
    const r = checkSignatures(forged, [{ keyid: 'SHA256:key-1', sig: k.sign(message) }], [k.key], undefined);
    expect(r).toEqual({ status: 'invalid', reason: expect.stringContaining('the signature by SHA256:key-1 does not match @acme/filter-x@1.1.0:sha512-') });
  });

  it('refuses an unknown key, a key that expired before publication, and signed versions without keys', () => {
    const k = keyPair('SHA256:old', '2025-01-01T00:00:00Z');
    const other = keyPair('SHA256:other');
    expect(checkSignatures(spec, [{ keyid: 'SHA256:nobody', sig: k.sign(message) }], [k.key], undefined)).toEqual({ status: 'invalid', reason: 'no registry key SHA256:nobody' });
    expect(checkSignatures(spec, [{ keyid: 'SHA256:old', sig: k.sign(message) }], [k.key, other.key], '2026-02-01T00:00:00Z'))
      .toEqual({ status: 'invalid', reason: 'key SHA256:old expired 2025-01-01T00:00:00Z, before the version was published (2026-02-01T00:00:00Z)' });
    expect(checkSignatures(spec, [{ keyid: 'SHA256:old', sig: k.sign(message) }], undefined, undefined).status).toBe('invalid');
    expect(checkSignatures(spec, undefined, [k.key], undefined)).toEqual({ status: 'unsigned' });
  });
});

describe('integrity strings', () => {
  it('checks the strongest hash given and refuses sha1 alone', () => {
    const data = Buffer.from('filter');
    const sha512 = integrityOf(data);
    expect(parseIntegrity(`${integrityOf(data, 'sha256')} ${sha512}`)).toEqual({ algorithm: 'sha512', digest: sha512.slice(7) });
    expect(checkIntegrity(data, sha512)).toBeUndefined();
    expect(checkIntegrity(Buffer.from('filtes'), sha512)).toMatch(/^its content has sha512-.*, expected sha512-/);
    expect(checkIntegrity(data, integrityOf(data, 'sha1'))).toMatch(/only a sha1 integrity/);
    expect(checkIntegrity(data, 'md5-abc')).toMatch(/is not an integrity string/);
  });
});

describe('package tarballs', () => {
  it('reads a package, and refuses paths outside it and links', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-tarball-'));
    try {
      await mkdir(path.join(dir, 'package/dist'), { recursive: true });
      await writeFile(path.join(dir, 'package/package.json'), '{"name":"x","version":"1.0.0"}');
      await writeFile(path.join(dir, 'package/dist/filter.wasm'), 'wasm');
      await create({ gzip: true, cwd: dir, file: path.join(dir, 'ok.tgz') }, ['package']);
      const files = await readTarball(await readFile(path.join(dir, 'ok.tgz')));
      expect([...files.keys()].sort()).toEqual(['dist/filter.wasm', 'package.json']);
      expect(files.get('dist/filter.wasm')!.toString()).toBe('wasm');

      // An entry named package/../evil: a tarball that would write outside its folder.
      await create({ gzip: true, cwd: dir, file: path.join(dir, 'evil.tgz'), onWriteEntry: (e) => { if (e.path.endsWith('filter.wasm')) e.path = 'package/../../evil.wasm'; } }, ['package']);
      await expect(readTarball(await readFile(path.join(dir, 'evil.tgz')))).rejects.toThrow(/a path outside the package/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
