// What capture derives from a mesh config, without the kernel: the plan, the nftables ruleset,
// the map layouts shared with bpf/lib/maps.h, and /proc/mounts parsing.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { capturePlan, nftRuleset } from '../src/capture/index.js';
import { podLinkDir } from '../src/capture/ebpf.js';
import { DEST_LOCAL, DEST_MESHED, encodeConfig, encodeDestKey, ipBytes, ipText, AF_INET6 } from '../src/capture/layout.js';
import { parseMounts } from '../src/capture/mounts.js';
import { ownCgroup, podCgroupDir } from '../src/capture/cgroups.js';
import { MeshConfigSchema, type MeshConfig } from '../src/config/schema.js';
import { parseMeshConfig, type MeshConfigError } from '../src/config/index.js';
import { Value } from '@sinclair/typebox/value';

function config(extra: Partial<MeshConfig> = {}): MeshConfig {
  const base = Value.Default(MeshConfigSchema, {
    node: 'n1',
    proxy: { outbound: { address: '10.0.0.1', port: 15001 } },
    workloads: [
      { name: 'web', namespace: 'shop', address: '10.1.0.5', cgroup: 'kubepods/pod-web' },
      { name: 'db', namespace: 'shop', address: 'fd00::5', labels: { app: 'db' } },
      { name: 'far', namespace: 'shop', address: '10.2.0.7', node: 'n2', cgroup: 'kubepods/pod-far' },
    ],
    services: [{ name: 'db', namespace: 'shop', vip: '10.96.0.10', ports: [{ port: 5432 }, { port: 80 }], selector: { app: 'db' } }],
    ...extra,
  }) as MeshConfig;
  return base;
}

describe('capture plan', () => {
  it('enrolls local workloads with a cgroup only, and marks meshed and local destinations', () => {
    const plan = capturePlan(config());
    expect(plan.pods).toEqual([{ key: 'web.shop', address: '10.1.0.5', cgroup: 'kubepods/pod-web' }]);
    expect(plan.redirect).toEqual({ ip4: '10.0.0.1', ip6: undefined, port: 15001 });
    expect(plan.destinations).toEqual(expect.arrayContaining([
      { family: 4, ip: '10.96.0.10', port: 5432, flags: DEST_MESHED },
      { family: 4, ip: '10.96.0.10', port: 80, flags: DEST_MESHED },
      { family: 4, ip: '10.1.0.5', port: 0, flags: DEST_MESHED | DEST_LOCAL },
      { family: 6, ip: 'fd00::5', port: 0, flags: DEST_MESHED | DEST_LOCAL },
      { family: 4, ip: '10.2.0.7', port: 0, flags: DEST_MESHED },
    ]));
    expect(plan.destinations).toHaveLength(5);
  });

  it('redirects to 127.0.0.1 when the listener is a wildcard and no redirectAddress is set', () => {
    const c = config();
    c.proxy.outbound.address = '0.0.0.0';
    expect(capturePlan(c).redirect.ip4).toBe('127.0.0.1');
    c.capture.redirectAddress6 = 'fd00::1';
    expect(capturePlan(c).redirect.ip6).toBe('fd00::1');
  });

  it('writes one nftables table: meshed sets, DNAT by cgroup (output) and by pod address (prerouting), replacing the old table', () => {
    const text = nftRuleset(capturePlan(config()), 'ambit', '/sys/fs/cgroup/unified', () => true);
    expect(text.startsWith('table inet ambit\ndelete table inet ambit\ntable inet ambit {')).toBe(true);
    expect(text).toContain('elements = { 10.96.0.10 . 5432, 10.96.0.10 . 80 }');
    expect(text).toContain('socket cgroupv2 level 2 "unified/kubepods/pod-web" ip daddr . tcp dport @svc4 dnat ip to 10.0.0.1:15001');
    expect(text).toContain('ip saddr @pods4 ip daddr . tcp dport @svc4 dnat ip to 10.0.0.1:15001');
    expect(text).toContain('ip saddr @pods4 meta l4proto tcp ip daddr @wl4 dnat ip to 10.0.0.1:15001');
    // No IPv6 listener: no IPv6 rules.
    expect(text).not.toContain('dnat ip6');
  });
});

describe('capture map layouts (bpf/lib/maps.h)', () => {
  it('encodes struct ambit_config in 48 bytes with the cgroup id at 32 and the netns cookie at 40', () => {
    const b = encodeConfig({ proxyIp4: '10.0.0.1', proxyIp6: 'fd00::1', proxyPort: 15001, flags: 3, proxyCgroupId: 7n, proxyNetnsCookie: 9n });
    expect(b).toHaveLength(48);
    expect([...b.subarray(0, 4)]).toEqual([10, 0, 0, 1]);
    expect(b.readUInt16BE(4)).toBe(0xfd00);
    expect(b[19]).toBe(1);
    expect(b.readUInt16LE(20)).toBe(15001);
    expect(b.readUInt16LE(22)).toBe(3);
    expect(b.readBigUInt64LE(32)).toBe(7n);
    expect(b.readBigUInt64LE(40)).toBe(9n);
  });

  it('encodes destination keys and round-trips addresses', () => {
    const k = encodeDestKey({ family: 6, ip: 'fd06::100:2', port: 80 });
    expect(k).toHaveLength(24);
    expect(k.readUInt32LE(0)).toBe(AF_INET6);
    expect(ipText(AF_INET6, k.subarray(4, 20))).toBe('fd06::100:2');
    expect(ipText(AF_INET6, ipBytes('::ffff:10.1.2.3'))).toBe('10.1.2.3');
    expect(k.readUInt32LE(20)).toBe(80);
  });

  it('names pod link folders without dots (bpffs refuses them)', () => {
    expect(podLinkDir('web.shop')).toBe('pod-shop_web');
  });
});

describe('/proc/mounts', () => {
  it('finds cgroup2 and bpffs, decoding octal escapes', () => {
    const m = parseMounts('cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\nbpf /sys/fs/my\\040bpf bpf rw 0 0\n');
    expect(m).toEqual([
      { device: 'cgroup2', path: '/sys/fs/cgroup/unified', type: 'cgroup2' },
      { device: 'bpf', path: '/sys/fs/my bpf', type: 'bpf' },
    ]);
  });
});

describe('capture config errors', () => {
  const base = 'node: n1\nworkloads:\n  - { name: web, address: 10.1.0.5, cgroup: kubepods/pod-web }\n';
  const issues = (yaml: string): string => {
    try {
      parseMeshConfig(yaml, 'mesh.yaml');
    } catch (e) {
      expect((e as MeshConfigError).code).toBe('AMBIT_ERR_MESH_CONFIG');
      return (e as Error).message;
    }
    throw new Error('no error');
  };

  it('says which capture setting is wrong and why', () => {
    expect(issues(`${base}capture: { redirectAddress: 'fd00::1' }\n`)).toMatch(/\/capture\/redirectAddress.*must be an IPv4 address/);
    expect(issues(`${base}capture: { redirectAddress6: 10.0.0.1 }\n`)).toMatch(/\/capture\/redirectAddress6.*must be an IPv6 address/);
    expect(issues(`${base}capture: { mode: iptables }\n`)).toMatch(/\/capture\/mode/);
    expect(issues(`${base}capture: { nftTable: 'bad name' }\n`)).toMatch(/\/capture\/nftTable/);
  });

  it('defaults to auto, sockhash on, table ambit', () => {
    const { config: c } = parseMeshConfig(base, 'mesh.yaml');
    expect(c.capture).toEqual({ mode: 'auto', sockhash: true, nftTable: 'ambit' });
    expect(c.workloads[0]?.cgroup).toBe('kubepods/pod-web');
  });
});

describe('pod cgroups from a Kubernetes pod UID', () => {
  const uid = '7c1e2f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6';

  it('enrolls a workload by podUid and finds its cgroup in the kubelet layouts (systemd and cgroupfs)', () => {
    const { config: c } = parseMeshConfig(`node: n1\nworkloads:\n  - { name: web, address: 10.1.0.5, podUid: ${uid} }\n`, 'mesh.yaml');
    const [pod] = capturePlan(c).pods;
    expect(pod).toEqual({ key: 'web.default', address: '10.1.0.5', podUid: uid });
    const systemd = `/cg/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${uid.replace(/-/g, '_')}.slice`;
    expect(podCgroupDir('/cg', pod!, (d) => d === systemd)).toBe(systemd);
    expect(podCgroupDir('/cg', pod!, (d) => d === `/cg/kubepods/besteffort/pod${uid}`)).toBe(`/cg/kubepods/besteffort/pod${uid}`);
    expect(podCgroupDir('/cg', pod!, () => false)).toBeUndefined();
    // An explicit cgroup wins.
    expect(podCgroupDir('/cg', { cgroup: 'x/y', podUid: uid }, () => true)).toBe('/cg/x/y');
  });

  it('finds the proxy\'s own cgroup from its pod UID (a pod whose /proc/self/cgroup reads 0::/ in its cgroup namespace)', () => {
    const cgroupfs = `/cg/kubepods/burstable/pod${uid}`;
    expect(ownCgroup('/cg', uid, (d) => d === cgroupfs)).toBe(`kubepods/burstable/pod${uid}`);
    expect(() => ownCgroup('/cg', uid, () => false)).toThrow(/AMBIT_POD_UID=7c1e2f3a.*found nothing/);
    // Without a pod UID: this process's own cgroup2 path.
    const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.startsWith('0::'));
    if (own) expect(ownCgroup('/cg', undefined)).toBe(own.slice(3).replace(/^\//, ''));
  });

  it('rejects a podUid that is not a UID', () => {
    expect(() => parseMeshConfig('node: n1\nworkloads:\n  - { name: web, address: 10.1.0.5, podUid: "../../etc" }\n', 'mesh.yaml')).toThrow(/\/workloads\/0\/podUid/);
  });
});
