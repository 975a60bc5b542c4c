// The eBPF loader's error paths, against the real kernel (root): what a user sees when the
// object, the cgroup or the pin is wrong, and a workload whose cgroup does not exist.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as bpf from '@ambit/addon/bpf';
import { startCapture, uninstallCapture } from '../src/capture/index.js';
import { BPF_DIR } from '../src/capture/ebpf.js';
import { bpffsMount, cgroup2Mount } from '../src/capture/mounts.js';
import { parseMeshConfig } from '../src/config/index.js';

const skip = process.getuid?.() !== 0 ? 'needs root' : !bpf.available ? `eBPF loader addon unavailable: ${bpf.unavailableReason ?? ''}` : !cgroup2Mount() ? 'cgroup2 is not mounted' : undefined;

describe.skipIf(skip !== undefined)(`eBPF loader errors${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const id = randomBytes(3).toString('hex');
  const pinDir = `amb6-loader-${id}`;
  const cgroup = path.join(cgroup2Mount() ?? '/nonexistent', `amb6-loader-${id}`);

  afterAll(async () => {
    await uninstallCapture({ capture: { mode: 'ebpf', sockhash: true, nftTable: `amb6_${id}`, pinDir } });
    if (existsSync(cgroup)) rmdirSync(cgroup);
    const bpffs = bpffsMount();
    if (bpffs) expect(existsSync(path.join(bpffs, pinDir))).toBe(false);
  });

  it('throws system errors with the errno name and what was attempted', () => {
    expect(() => bpf.loadObject('/nonexistent/x.bpf.o', '/sys/fs/bpf')).toThrow(expect.objectContaining({ code: 'ENOENT', message: expect.stringMatching(/opening \/nonexistent\/x\.bpf\.o: ENOENT/) }));
    expect(() => bpf.attachCgroup(0, 10, '/nonexistent/cgroup', '/sys/fs/bpf/amb6-none')).toThrow(expect.objectContaining({ code: 'ENOENT', message: expect.stringMatching(/attaching to cgroup \/nonexistent\/cgroup/) }));
    expect(bpf.detachLink(`/sys/fs/bpf/amb6-missing-${id}`)).toBe(false);
    expect(() => bpf.mapKeys(-1, 4)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => bpf.mapUpdate(-1, Buffer.alloc(4), Buffer.alloc(4))).toThrow(expect.objectContaining({ code: 'EBADF' }));
    // A wrong argument is a TypeError, not a crash.
    expect(() => (bpf.loadObject as unknown as (x: number) => void)(42)).toThrow(TypeError);
  });

  it('loads every shipped object', () => {
    for (const name of ['connect', 'peername', 'sockopt', 'sockops', 'redirect']) {
      expect(existsSync(path.join(BPF_DIR, `${name}.bpf.o`)), name).toBe(true);
    }
  });

  it('enrolls the pods whose cgroup exists and says which one it skipped and why', async () => {
    mkdirSync(cgroup);
    const { config } = parseMeshConfig(`
node: n1
proxy: { outbound: { address: 10.206.50.100, port: 15001 } }
# The proxy's programs go on our own test cgroup, never on the cgroup this test runs in.
capture: { mode: ebpf, pinDir: ${pinDir}, proxyCgroup: ${path.basename(cgroup)} }
workloads:
  - { name: here, namespace: t, address: 10.206.50.1, cgroup: ${path.basename(cgroup)} }
  - { name: gone, namespace: t, address: 10.206.50.2, cgroup: amb6-loader-missing-${id} }
`, 'mesh.yaml');
    const lines: string[] = [];
    const capture = await startCapture(config, (level, m) => lines.push(`${level}: ${m}`));
    try {
      expect(capture.mode).toBe('ebpf');
      expect(capture.status().ebpf?.pods.map((p) => p.key)).toEqual(['here.t']);
      expect(lines).toContainEqual(expect.stringMatching(/^warn: capture: workload gone\.t not enrolled: its cgroup .*amb6-loader-missing-.* does not exist/));
      expect(capture.stats()?.connectRedirected).toBeGreaterThanOrEqual(0);
    } finally {
      await capture.close();
    }
  });
});
