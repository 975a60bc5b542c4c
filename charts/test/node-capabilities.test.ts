// The node proxy's capabilities, proven on the kernel: with exactly the capabilities the chart gives
// its container (nodeProxy.capabilities, every other one dropped, as in the pod) the node proxy
// captures pods' connects with eBPF; without any one of them it cannot, and says why.
//
// The proxy runs as the DaemonSet runs it: root with a bounding set of only those capabilities
// (`setpriv`), in a kubelet-style pod cgroup (kubepods/burstable/pod<uid>/<container>) found through
// AMBIT_POD_UID, as the chart sets it. Pods are network namespaces + cgroups (CaptureTopology).
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as bpf from '@ambit/addon/bpf';
import { uninstallCapture } from '../../runtime/src/capture/index.js';
import { ADDR, CaptureTopology, topologySkipReason } from '../../runtime/src/bench/capture/topology.js';
import { REPO, one, template } from './support/helm.js';

const execFileP = promisify(execFile);
const CLI_JS = path.join(REPO, 'runtime/dist/cli.js');
const CLIENT_JS = path.join(REPO, 'runtime/test/support/netns/client.mjs');
const UPSTREAMS_JS = path.join(REPO, 'runtime/test/support/netns/upstreams.mjs');
const VIP = '10.206.100.2';

function skipReason(): string | undefined {
  const topo = topologySkipReason();
  if (topo) return topo;
  if (!bpf.available) return `the eBPF loader addon is unavailable: ${bpf.unavailableReason ?? ''}`;
  if (spawnSync('setpriv', ['--version']).error) return '`setpriv` is not installed: apt-get install -y util-linux';
  return undefined;
}

interface Dump { capture: { mode: string; stepsDown: string[]; pods: string[] } }

const skip = skipReason();
describe.skipIf(skip !== undefined)(`node proxy capabilities${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const id = randomBytes(2).toString('hex');
  const prefix = `amb17${id}`;
  const podUid = randomUUID();
  let t: CaptureTopology;
  let dir = '';
  let caps: string[] = [];
  // The proxy's pod cgroup as the kubelet (cgroupfs driver) lays it out, and its container below it.
  let podCgroup = '';
  const made: string[] = [];

  beforeAll(async () => {
    const { objects } = await template();
    const proxy = (one(objects, 'DaemonSet')['spec'] as { template: { spec: { containers: Array<{ securityContext: { capabilities: { add: string[]; drop: string[] } } }> } } }).template.spec.containers[0]!;
    expect(proxy.securityContext.capabilities.drop).toEqual(['ALL']);
    caps = proxy.securityContext.capabilities.add;
    t = await CaptureTopology.create(prefix);
    podCgroup = path.join(t.cgroupRoot, 'kubepods', 'burstable', `pod${podUid}`);
    for (const d of ['kubepods', 'kubepods/burstable', `kubepods/burstable/pod${podUid}`, `kubepods/burstable/pod${podUid}/proxy`]) {
      const abs = path.join(t.cgroupRoot, d);
      if (!existsSync(abs)) { mkdirSync(abs); made.unshift(abs); }
    }
    dir = await mkdtemp(path.join(os.tmpdir(), 'amb17-caps-'));
    const up = t.start('upstreams', 'b', [process.execPath, UPSTREAMS_JS], { AMBIT_UPSTREAMS: `alpha=${ADDR.podB}:18181` });
    await t.waitFor(up, 'READY');
  });

  afterAll(async () => {
    await t?.destroy();
    for (const d of made) {
      for (let i = 0; i < 50 && existsSync(d); i++) {
        try { rmdirSync(d); } catch { await new Promise((r) => setTimeout(r, 100)); }
      }
    }
    await uninstallCapture({ capture: { mode: 'ebpf', sockhash: true, nftTable: 'ambit', pinDir: `${prefix}-pins` } });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Runs the node proxy with only `keep` capabilities until it is ready, then returns what it says about capture. */
  async function proxyWith(keep: string[], tag: string): Promise<{ dump: Dump; output: string; http?: { status?: number; body?: { upstream?: string } } }> {
    const config = path.join(dir, `${tag}.yaml`);
    await writeFile(config, `
node: amb17-node
proxy:
  outbound: { address: ${ADDR.proxy}, port: 15001 }
  inbound: { address: 127.0.0.1, port: 15006 }
  admin: { address: 127.0.0.1, port: 15000 }
  engine: v8
  workers: 1
capture: { mode: ebpf, redirectAddress: ${ADDR.proxy}, pinDir: ${prefix}-pins }
workloads:
  - { name: pod-a, namespace: test, address: ${ADDR.podA}, cgroup: ${t.cgroupRel.a} }
  - { name: pod-b, namespace: test, address: ${ADDR.podB}, labels: { app: b } }
services:
  - { name: alpha, namespace: test, vip: ${VIP}, ports: [{ port: 80, targetPort: 18181, protocol: tcp }], selector: { app: b } }
`);
    const bounding = ['-all', ...keep.map((c) => `+${c.toLowerCase()}`)].join(',');
    // Into the pod's container cgroup and the node's netns with full privilege; then the capabilities are cut.
    const cmd = ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', path.join(podCgroup, 'proxy'),
      'nsenter', `--net=/var/run/netns/${t.ns.node}`,
      'setpriv', `--bounding-set=${bounding}`, '--inh-caps=-all', '--',
      process.execPath, CLI_JS, 'run', '--config', config, '--access-log', 'off'];
    const proxy = t.start(`proxy-${tag}`, 'node', ['/usr/bin/env', ...cmd.slice(0)], { AMBIT_POD_UID: podUid });
    try {
      const ready = await t.run('node', [process.execPath, CLIENT_JS], { AMBIT_WAIT_READY: 'http://127.0.0.1:15000/ready', AMBIT_WAIT_MS: '30000', AMBIT_REQUESTS: JSON.stringify([{ url: 'http://127.0.0.1:15000/config_dump' }]) });
      if (ready.code !== 0) throw new Error(`proxy not ready: ${ready.stderr}\n${proxy.output()}`);
      const dump = (JSON.parse(ready.stdout) as Array<{ body: Dump }>)[0]!.body;
      let http;
      if (dump.capture.mode === 'ebpf') {
        const r = await t.run('a', [process.execPath, CLIENT_JS], { AMBIT_REQUESTS: JSON.stringify([{ url: `http://${VIP}/caps` }]) });
        http = (JSON.parse(r.stdout) as Array<{ status?: number; body?: { upstream?: string } }>)[0];
      }
      return { dump, output: proxy.output(), http };
    } finally {
      await t.stop(proxy);
    }
  }

  it('the chart adds exactly BPF, NET_ADMIN and PERFMON', () => {
    expect(caps).toEqual(['BPF', 'NET_ADMIN', 'PERFMON']);
  });

  it('captures with eBPF with only those capabilities, from a pod cgroup found by AMBIT_POD_UID', async () => {
    const r = await proxyWith(caps, 'all');
    expect(r.dump.capture.mode, `${r.dump.capture.stepsDown.join('; ')}\n${r.output}`).toBe('ebpf');
    expect(r.dump.capture.pods).toEqual(['pod-a.test']);
    // SO_ORIGINAL_DST is answered on the proxy's pod cgroup (the container cgroup below it inherits it).
    const { stdout } = await execFileP('bpftool', ['-j', 'cgroup', 'show', podCgroup]);
    expect((JSON.parse(stdout || '[]') as Array<{ name?: string }>).map((p) => p.name).filter((n) => n?.startsWith('ambit_')).sort()).toEqual(['ambit_getsockopt', 'ambit_sockops']);
    expect(r.http?.status).toBe(200);
    expect(r.http?.body?.upstream).toBe('alpha');
  });

  it('cannot capture without any one of them, and says which permission failed', async () => {
    // What each one is for, as the kernel says it (values.yaml and charts/README.md name these).
    const why: Record<string, RegExp> = {
      BPF: /eBPF unavailable: loading connect\.bpf\.o failed: .*EPERM/,
      NET_ADMIN: /eBPF unavailable: loading connect\.bpf\.o failed: .*EPERM.*map 'ambit_socks': failed to create/,
      PERFMON: /eBPF unavailable: loading sockopt\.bpf\.o failed: .*EACCES/,
    };
    expect(Object.keys(why)).toEqual(caps);
    for (const missing of caps) {
      const r = await proxyWith(caps.filter((c) => c !== missing), `no-${missing}`);
      expect(r.dump.capture.mode, `without ${missing}: ${r.output}`).toBe('none');
      expect(r.dump.capture.stepsDown.join('; '), `without ${missing}`).toMatch(why[missing]!);
    }
  });

  it('SYS_ADMIN is not needed: it would only stand in for the others (the kernel lets it imply BPF, NET_ADMIN and PERFMON)', async () => {
    const r = await proxyWith(['NET_ADMIN', 'SYS_ADMIN'], 'sys-admin');
    expect(r.dump.capture.mode).toBe('ebpf');
    expect(caps).not.toContain('SYS_ADMIN');
  });
});
