/**
 * The shared tables (capability `shared`) against another user of the same node:
 *
 * - a table file with random bytes or crafted lengths never crashes the process that maps it
 *   (every case runs in one child process: a crash is its signal);
 * - a planted shared directory (another owner, or group/other writable) is refused, naming the
 *   path and what to do, by the TypeScript side and by the C table itself;
 * - a planted table file (another owner, or readable by others) is refused; new ones are 0600;
 * - the directory a node makes for itself is 0700, and a directory planted at its name is refused.
 *
 * The table file layout the crafted cases write into: `runtime/addon/src/shared-table.c`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openSharedTable } from '@ambit/addon/shared';
import { openSharedDir, sharedDirBase } from '../src/filters/shared-dir.js';
import { REPO } from './fixtures.js';

const SHARED_JS = JSON.stringify(path.join(REPO, 'runtime/addon/dist/shared.js'));
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

/** The file of a scope's table: FNV-1a 64 of the scope, as the C table names it. */
function tableFile(dir: string, scope: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(scope)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return path.join(dir, `${h.toString(16).padStart(16, '0')}.table`);
}

// Layout of a table file (shared-table.c): header, then one 64-byte lock line per bucket, then slots.
const HEADER_BYTES = 512;
const OFF_BUCKETS = 12;
const OFF_SCOPE_LEN = 36;
const SLOT_BYTES = 4 + 2 + 2 + 128 + 256;
const SLOTS_PER_BUCKET = 8;

/** Offset of the first slot holding `key`, or -1. */
function slotOf(file: Buffer, key: string): number {
  const buckets = file.readUInt32LE(OFF_BUCKETS);
  const start = HEADER_BYTES + buckets * 64;
  for (let off = start; off + SLOT_BYTES <= file.length; off += SLOT_BYTES) {
    if (file.readUInt32LE(off) !== 0 && file.readUInt16LE(off + 4) === key.length && file.subarray(off + 8, off + 8 + key.length).toString() === key) return off;
  }
  return -1;
}

/** Runs `body` in a child process with `openSharedTable` in scope; its status, signal and output. */
function child(body: string, args: string[]): { status: number | null; signal: NodeJS.Signals | null; out: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const { openSharedTable } = await import(${SHARED_JS});\n${body}`, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}` };
}

type Mutation = (file: Buffer) => Buffer;
const at = (off: number, write: (b: Buffer) => void): Mutation => (f) => { if (off >= 0) write(f); return f; };

/** The crafted cases: each mutates a valid table whose key `k` holds `v`. */
const CASES: Array<[string, Mutation]> = [
  ['value length 65535', (f) => at(slotOf(f, 'k'), (b) => b.writeUInt16LE(65535, slotOf(f, 'k') + 6))(f)],
  ['value length 257', (f) => at(slotOf(f, 'k'), (b) => b.writeUInt16LE(257, slotOf(f, 'k') + 6))(f)],
  ['key length 65535', (f) => at(slotOf(f, 'k'), (b) => b.writeUInt16LE(65535, slotOf(f, 'k') + 4))(f)],
  ['scope length 2^32-1', (f) => { f.writeUInt32LE(0xffffffff, OFF_SCOPE_LEN); return f; }],
  ['bucket count 2^31', (f) => { f.writeUInt32LE(0x80000000, OFF_BUCKETS); return f; }],
  ['bucket count 1', (f) => { f.writeUInt32LE(1, OFF_BUCKETS); return f; }],
  ['truncated to half', (f) => f.subarray(0, f.length >> 1)],
  ['random header bytes', (f) => { randomBytes(HEADER_BYTES - 8).copy(f, 8); return f; }],
  ['random lock bytes', (f) => { randomBytes(64 * 64).copy(f, HEADER_BYTES); return f; }],
  ['random slot bytes', (f) => { const s = HEADER_BYTES + f.readUInt32LE(OFF_BUCKETS) * 64; randomBytes(Math.min(f.length - s, SLOT_BYTES * SLOTS_PER_BUCKET * 64)).copy(f, s); return f; }],
  ...Array.from({ length: 24 }, (_, i): [string, Mutation] => [`random length bytes in slots #${i}`, (f) => {
    const s = HEADER_BYTES + f.readUInt32LE(OFF_BUCKETS) * 64;
    for (let off = s; off + SLOT_BYTES <= f.length; off += SLOT_BYTES) {
      if (f.readUInt32LE(off) === 0) continue;
      f.writeUInt16LE(randomBytes(2).readUInt16LE(), off + 4 + (i % 2) * 2);
    }
    return f;
  }]),
  ...Array.from({ length: 12 }, (_, i): [string, Mutation] => [`random file #${i}`, () => randomBytes(1 + randomBytes(3).readUIntLE(0, 3) % 300_000)]),
  ...Array.from({ length: 12 }, (_, i): [string, Mutation] => [`random bytes at random places #${i}`, (f) => {
    for (let n = 0; n < 64; n++) f[randomBytes(4).readUInt32LE() % f.length] = randomBytes(1)[0]!;
    return f;
  }]),
];

describe('shared table files from someone else', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-shared-trust-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('random bytes and crafted lengths never crash the process that maps them', () => {
    const scopes = CASES.map((_, i) => `fuzz/${i}`);
    // One process makes valid tables (small: 64 keys; a key k holding v, counters), and exits.
    const made = child(`
      for (const scope of process.argv.slice(2)) {
        const t = openSharedTable(process.argv[1], scope, 64);
        t.set('k', 'v', 0);
        for (let i = 0; i < 40; i++) t.add('n' + i, i);
      }
      console.log('made');
    `, [dir, ...scopes]);
    expect(made.out).toContain('made');
    // This process damages them (it never maps them).
    CASES.forEach(([, mutate], i) => {
      const file = tableFile(dir, scopes[i]!);
      const bytes = mutate(Buffer.from(readFileSync(file)));
      writeFileSync(file, bytes);
      chmodSync(file, 0o600);
    });
    // Another process opens each and uses it: every case ends in a value or a coded error.
    const used = child(`
      const bad = [];
      for (const scope of process.argv.slice(2)) {
        const said = [];
        const attempt = (what, fn) => {
          try {
            const r = fn();
            if (typeof r === 'object' && r && r.value.length > 256) bad.push(scope + ' ' + what + ': a value of ' + r.value.length + ' bytes');
            said.push(what + ' ok');
          } catch (e) {
            if (!/^AMBIT_ERR_/.test(e.code ?? '')) bad.push(scope + ' ' + what + ': uncoded error ' + e.message);
            said.push(what + ' ' + e.code);
          }
        };
        let t;
        attempt('open', () => { t = openSharedTable(process.argv[1], scope, 64); });
        if (t) {
          attempt('get', () => t.get('k'));
          attempt('set', () => t.set('k', 'w', t.get('k')?.version ?? 0));
          attempt('add', () => t.add('n1', 1));
          for (let i = 0; i < 40; i++) attempt('get ' + i, () => t.get('n' + i));
          for (let i = 0; i < 10; i++) attempt('add new ' + i, () => t.add('m' + i, 1));
        }
        console.log(scope + ': ' + said.slice(0, 4).join(', '));
      }
      console.log('bad: ' + JSON.stringify(bad));
    `, [dir, ...scopes]);
    expect(used.signal, used.out).toBeNull();
    expect(used.status, used.out).toBe(0);
    for (const scope of scopes) expect(used.out).toContain(`${scope}: open`);
    expect(used.out).toContain('bad: []');
    // The crafted lengths are refused as damage, with the file and what to do.
    expect(used.out).toMatch(/fuzz\/0: open ok, get AMBIT_ERR_SHARED_TABLE/);
    expect(used.out).toMatch(/fuzz\/4: open AMBIT_ERR_SHARED_TABLE/);
  });

  it.skipIf(!isRoot)('a directory of another owner, or writable by group or others, is refused naming it and what to do', () => {
    const foreign = path.join(dir, 'foreign');
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, NOBODY, NOBODY);
    const open = path.join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    for (const planted of [foreign, open]) {
      expect(() => openSharedDir(planted)).toThrow(expect.objectContaining({ code: 'AMBIT_ERR_SHARED_TABLE', message: expect.stringContaining(planted) }));
      expect(() => openSharedDir(planted)).toThrow(/owned by|writable/);
      // The C table (what the wasmtime crate calls directly) refuses it too.
      expect(() => openSharedTable(planted, 'planted/x')).toThrow(expect.objectContaining({ code: 'AMBIT_ERR_SHARED_TABLE', message: expect.stringContaining(planted) }));
      expect(existsSync(tableFile(planted, 'planted/x'))).toBe(false);
    }
  });

  it.skipIf(!isRoot)('a planted table file is refused; a new one is 0600', () => {
    const good = path.join(dir, 'good');
    mkdirSync(good, { mode: 0o700 });
    const made = openSharedTable(good, 'mode/new');
    expect(statSync(made.path).mode & 0o777).toBe(0o600);
    const elsewhere = path.join(dir, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o700 });
    for (const [scope, mode, owner] of [['planted/readable', 0o644, 0], ['planted/foreign', 0o600, NOBODY]] as const) {
      // A whole, valid table of that scope, made elsewhere and planted here.
      expect(child(`openSharedTable(process.argv[1], process.argv[2]).add('n', 1); console.log('made');`, [elsewhere, scope]).out).toContain('made');
      const file = tableFile(good, scope);
      writeFileSync(file, readFileSync(tableFile(elsewhere, scope)));
      chmodSync(file, mode);
      chownSync(file, owner, owner);
      const r = child(`try { openSharedTable(process.argv[1], process.argv[2]); console.log('opened'); } catch (e) { console.log(e.code + ': ' + e.message); }`, [good, scope]);
      expect(r.out).toMatch(/^AMBIT_ERR_SHARED_TABLE: /);
      expect(r.out).toContain(file);
    }
  });

  it.skipIf(!isRoot)('the directory a node makes is 0700, and one planted at its name is refused', () => {
    const own = openSharedDir(undefined);
    try {
      expect(statSync(own.path).mode & 0o777).toBe(0o700);
      expect(statSync(own.path).uid).toBe(process.getuid!());
      // The next names this process would pick (its pid and start time are public in /proc).
      const next = own.path.replace(/-(\d+)$/, (_, n: string) => `-${Number(n) + 1}`);
      const planted = Array.from({ length: 4 }, (_, i) => next.replace(/-(\d+)$/, (_, n: string) => `-${Number(n) + i}`));
      for (const p of planted) {
        mkdirSync(p);
        chmodSync(p, 0o777);
        chownSync(p, NOBODY, NOBODY);
      }
      try {
        // Never one of the planted directories: a fresh one of its own.
        const made = openSharedDir(undefined);
        try {
          expect(planted).not.toContain(made.path);
          expect(statSync(made.path).uid).toBe(process.getuid!());
          expect(statSync(made.path).mode & 0o777).toBe(0o700);
        } finally {
          made.release();
        }
        for (const p of planted) expect(statSync(p).uid).toBe(NOBODY);
      } finally {
        for (const p of planted) rmSync(p, { recursive: true, force: true });
      }
    } finally {
      own.release();
    }
    expect(sharedDirBase()).toBeTruthy();
  });
});
