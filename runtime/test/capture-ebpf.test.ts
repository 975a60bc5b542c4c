// End to end: pods' connects captured by eBPF (and by the nftables fallback) reach the node proxy.
//
//   pod a (netns + cgroup) ──veth── node (netns + cgroup: `ambit run`) ──veth── pod b (netns + cgroup)
//   10.206.1.2                      proxy 10.206.0.1:15001, 10.206.0.9 (not meshed)  10.206.2.2: alpha :18181,
//                                                                                      beta :18182 (HTTP), echo :18190
//   VIPs: beta 10.206.100.1:80 (hello filter, L7), alpha 10.206.100.2:80 (L4), echo 10.206.100.3:7 (tcp)
//
// Everything is named amb6…, in 10.206.0.0/16, and removed after the suite, even when it fails:
// processes, namespaces (with their veths and nft tables), cgroups, bpffs pins.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as bpf from '@ambit/addon/bpf';
import { uninstallCapture } from '../src/capture/index.js';
import { bpffsMount } from '../src/capture/mounts.js';
import { ADDR, CaptureTopology, topologySkipReason } from '../src/bench/capture/topology.js';
import { HELLO_DIR, REPO } from './fixtures.js';
import { findTool } from './support/netns.js';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const CLIENT_JS = path.join(here, 'support/netns/client.mjs');
const UPSTREAMS_JS = path.join(here, 'support/netns/upstreams.mjs');
const CLI_JS = path.join(REPO, 'runtime/dist/cli.js');
const ECHO_JS = path.join(REPO, 'runtime/dist/bench/capture/echo-server.js');
const PING_JS = path.join(REPO, 'runtime/dist/bench/capture/ping-client.js');
const COLLIDE_JS = path.join(here, 'support/netns/collide.mjs');
const BPFTOOL = findTool('bpftool');
const NFT = findTool('nft');

const VIP = { beta: '10.206.100.1', alpha: '10.206.100.2', echo: '10.206.100.3', alpha6: 'fd06::100:2' } as const;

function skipReason(mode: 'ebpf' | 'nftables'): string | undefined {
  const topo = topologySkipReason();
  if (topo) return topo;
  if (mode === 'ebpf') {
    if (!bpf.available) return `the eBPF loader addon is unavailable: ${bpf.unavailableReason ?? ''}`;
    if (!BPFTOOL) return '`bpftool` is not installed (the suite checks what is left with it): apt-get install -y bpftool';
  }
  if (!NFT) return '`nft` is not installed: apt-get install -y nftables';
  return undefined;
}

function meshYaml(mode: string, pinDir: string, nftTable: string, podBCgroup: boolean, t: CaptureTopology): string {
  return `
node: amb6-node
trustDomain: mesh.test
proxy:
  outbound: { address: '::', port: 15001 }  # dual stack: pods reach it at ${ADDR.proxy} and [${ADDR.proxy6}]
  inbound: { address: 127.0.0.1, port: 15006 }
  admin: { address: 127.0.0.1, port: 15000 }
  workers: 1
capture:
  mode: ${mode}
  redirectAddress: ${ADDR.proxy}
  redirectAddress6: '${ADDR.proxy6}'
  pinDir: ${pinDir}
  nftTable: ${nftTable}
workloads:
  - { name: pod-a, namespace: test, serviceAccount: a, address: ${ADDR.podA}, cgroup: ${t.cgroupRel.a} }
  - { name: pod-b, namespace: test, serviceAccount: b, address: ${ADDR.podB}, labels: { app: b }${podBCgroup ? `, cgroup: ${t.cgroupRel.b}` : ''} }
services:
  - name: beta
    namespace: test
    vip: ${VIP.beta}
    ports: [{ port: 80, targetPort: 18182, protocol: http }]
    selector: { app: b }
  - name: alpha
    namespace: test
    vip: ${VIP.alpha}
    ports: [{ port: 80, targetPort: 18181, protocol: auto }]
    selector: { app: b }
  - name: alpha6
    namespace: test
    vip: '${VIP.alpha6}'
    ports: [{ port: 80, targetPort: 18181, protocol: auto }]
    selector: { app: b }
  - name: echo
    namespace: test
    vip: ${VIP.echo}
    ports: [{ port: 7, targetPort: 18190, protocol: tcp }]
    selector: { app: b }
bindings:
  - name: hello-beta
    target: { service: beta.test }
    direction: outbound
    filters:
      - ref: ${JSON.stringify(HELLO_DIR)}
        deadlineMs: 2000  # the suite shares two cores with other suites: no 503 for a slow call
        config: { header: x-ambit-hello, denyPathPrefixes: [/admin] }
`;
}

interface HttpResult { status?: number; headers?: Record<string, string>; body?: { upstream?: string; headers?: Record<string, string>; peer?: string }; error?: string; socket?: { remoteAddress?: string; remotePort?: number } }
interface PingResult { peer?: { address: string; port: number }; who?: string; rounds?: number; echoed?: number; error?: string }
interface Dump { capture: { mode: string; stepsDown: string[]; pods: string[]; ebpf?: { stats: Record<string, number>; entries: { origByTuple: number; socks: number }; pods: Array<{ key: string }> }; nftTable?: string } }

for (const mode of ['ebpf', 'nftables'] as const) {
  const skip = skipReason(mode);
  describe.skipIf(skip !== undefined)(`capture by ${mode}: pods reach the node proxy${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const id = randomBytes(2).toString('hex');
    const prefix = `amb6${mode[0]}${id}`;
    // The nftables suite asks for `auto` with a pin directory outside bpffs: eBPF must step down to nftables, saying why.
    const pinDir = mode === 'ebpf' ? `amb6-${mode}-${id}` : path.join(os.tmpdir(), `amb6-not-bpffs-${id}`);
    const configMode = mode === 'ebpf' ? 'ebpf' : 'auto';
    const nftTable = `amb6_${id}`;
    let t: CaptureTopology;
    let dir = '';
    let configPath = '';
    let proxy: ReturnType<CaptureTopology['start']> | undefined;

    const startProxy = async (workers = 1) => {
      proxy = t.start('proxy', 'node', [process.execPath, CLI_JS, 'run', '--config', configPath, '--workers', String(workers), '--access-log', path.join(dir, 'access.log'), '--log-level', 'info']);
      const ready = await t.run('node', [process.execPath, CLIENT_JS], { AMBIT_WAIT_READY: 'http://127.0.0.1:15000/ready', AMBIT_WAIT_MS: '30000', AMBIT_REQUESTS: '[]' });
      if (ready.code !== 0) throw new Error(`proxy not ready: ${ready.stderr}\n${proxy.output()}`);
    };
    const http = async (requests: Array<{ url: string }>, place: 'a' | 'b' = 'a'): Promise<HttpResult[]> => {
      const r = await t.run(place, [process.execPath, CLIENT_JS], { AMBIT_REQUESTS: JSON.stringify(requests) });
      if (r.code !== 0) throw new Error(`client failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as HttpResult[];
    };
    const ping = async (env: Record<string, string>): Promise<PingResult> => {
      const r = await t.run('a', [process.execPath, PING_JS], env);
      return JSON.parse(r.stdout || `{"error":${JSON.stringify(r.stderr)}}`) as PingResult;
    };
    const dump = async (): Promise<Dump> => {
      const [r] = await t.run('node', [process.execPath, CLIENT_JS], { AMBIT_REQUESTS: JSON.stringify([{ url: 'http://127.0.0.1:15000/config_dump' }]) })
        .then((x) => JSON.parse(x.stdout) as Array<{ body: Dump }>);
      return r!.body;
    };
    const bpftoolJson = async <T>(...args: string[]): Promise<T> => JSON.parse((await execFileP(BPFTOOL!, ['-j', ...args], { timeout: 10_000 })).stdout.trim() || '[]') as T;
    const cgroupAttachments = async (cg: string) => (await bpftoolJson<Array<{ name?: string; attach_type: string }>>('cgroup', 'show', cg)).filter((x) => x.name?.startsWith('ambit_'));

    beforeAll(async () => {
      t = await CaptureTopology.create(prefix);
      try {
        dir = await mkdtemp(path.join(os.tmpdir(), 'amb6-capture-'));
        configPath = path.join(dir, 'mesh.yaml');
        await writeFile(configPath, meshYaml(configMode, pinDir, nftTable, true, t));
        const up = t.start('upstreams', 'b', [process.execPath, UPSTREAMS_JS], { AMBIT_UPSTREAMS: `alpha=${ADDR.podB}:18181,beta=${ADDR.podB}:18182` });
        const echoB = t.start('echo-b', 'b', [process.execPath, ECHO_JS], { AMBIT_LISTEN: `${ADDR.podB}:18190` });
        const echoExt = t.start('echo-external', 'node', [process.execPath, ECHO_JS], { AMBIT_LISTEN: `${ADDR.external}:18190` });
        for (const e of [up, echoB, echoExt]) await t.waitFor(e, 'READY');
        await startProxy();
      } catch (e) {
        await t.destroy();
        throw e;
      }
    });

    afterAll(async () => {
      await t?.destroy();
      // Pins live in bpffs, outside the namespaces: remove them whatever happened above.
      if (mode === 'ebpf') await uninstallCapture({ capture: { mode, sockhash: true, nftTable, pinDir } });
      if (dir) await rm(dir, { recursive: true, force: true });
      if (mode === 'nftables') await rm(pinDir, { recursive: true, force: true });
      const { stdout } = await execFileP(findTool('ip') ?? 'ip', ['netns', 'list']);
      expect(stdout).not.toContain(prefix);
      const bpffs = bpffsMount();
      if (bpffs && mode === 'ebpf') expect(existsSync(path.join(bpffs, pinDir))).toBe(false);
    });

    it(`reports capture mode ${mode} with both pods enrolled`, async () => {
      const d = await dump();
      expect(d.capture.mode, d.capture.stepsDown.join('; ')).toBe(mode);
      expect(d.capture.pods).toEqual(['pod-a.test', 'pod-b.test']);
      if (mode === 'ebpf') expect(d.capture.ebpf?.pods.map((p) => p.key)).toEqual(['pod-a.test', 'pod-b.test']);
      else {
        expect(d.capture.nftTable).toBe(nftTable);
        expect(d.capture.stepsDown).toEqual([expect.stringMatching(/^eBPF unavailable: pin directory .* is not on bpffs: .*set capture\.pinDir/)]);
      }
    });

    it('routes a connect to a service VIP through the proxy, filters applied, and getpeername shows the VIP', async () => {
      const [beta, denied, alpha] = await http([{ url: `http://${VIP.beta}/y` }, { url: `http://${VIP.beta}/admin` }, { url: `http://${VIP.alpha}/x` }]);
      expect(beta?.error).toBeUndefined();
      expect(beta?.status).toBe(200);
      expect(beta?.body?.upstream).toBe('beta');
      expect(beta?.body?.headers?.['x-ambit-hello']).toBe('hello from pod-a');
      expect(beta?.socket).toMatchObject({ remoteAddress: VIP.beta, remotePort: 80 });
      // The upstream saw the proxy (the node's address toward pod b), not pod a.
      expect(beta?.body?.peer).toMatch(new RegExp(`^${ADDR.nodeB.replace(/\./g, '\\.')}:`));
      expect(denied?.status, JSON.stringify(denied?.body)).toBe(403);
      expect(alpha?.status).toBe(200);
      expect(alpha?.body?.upstream).toBe('alpha');
      expect(alpha?.body?.headers?.['x-ambit-hello']).toBeUndefined();
      expect(alpha?.socket).toMatchObject({ remoteAddress: VIP.alpha, remotePort: 80 });
    });

    it.skipIf(mode !== 'ebpf')('captures IPv6 connects too (connect6, getpeername6, IPv6 SO_ORIGINAL_DST)', async () => {
      const [alpha6] = await http([{ url: `http://[${VIP.alpha6}]/six` }]);
      expect(alpha6?.error).toBeUndefined();
      expect(alpha6?.status).toBe(200);
      expect(alpha6?.body?.upstream).toBe('alpha');
      expect(alpha6?.socket).toMatchObject({ remoteAddress: VIP.alpha6, remotePort: 80 });
    });

    it('leaves a connect to a destination outside the mesh alone: it arrives from the pod itself', async () => {
      const direct = await ping({ AMBIT_TARGET: `${ADDR.external}:18190`, AMBIT_WHO: '1' });
      expect(direct.error).toBeUndefined();
      expect(direct.peer).toEqual({ address: ADDR.external, port: 18190 });
      expect(direct.who).toMatch(new RegExp(`^${ADDR.podA.replace(/\./g, '\\.')}:`));
      const meshed = await ping({ AMBIT_TARGET: `${VIP.echo}:7`, AMBIT_WHO: '1' });
      expect(meshed.error).toBeUndefined();
      expect(meshed.peer).toEqual({ address: VIP.echo, port: 7 });
      expect(meshed.who).toMatch(new RegExp(`^${ADDR.nodeB.replace(/\./g, '\\.')}:`));
      if (mode === 'ebpf') {
        const stats = (await dump()).capture.ebpf!.stats;
        expect(stats['connectDirect']).toBeGreaterThanOrEqual(1);
        expect(stats['connectRedirected']).toBeGreaterThanOrEqual(4);
        expect(stats['origDstAnswered']).toBeGreaterThanOrEqual(4);
        expect(stats['peernameRewritten']).toBeGreaterThanOrEqual(4);
      }
    });

    it.skipIf(mode !== 'ebpf')('short-circuits pod → proxy → pod bytes through the sockhash: counters up, veths quiet', async () => {
      const rounds = 2000;
      const before = (await dump()).capture.ebpf!.stats;
      const packetsBefore = await t.vethPackets();
      // 50 ms after connecting: under load the proxy's side may enter the sockhash after the client's
      // first write could go out, and then that connection stays on TCP (by design: no reordering).
      const r = await ping({ AMBIT_TARGET: `${VIP.echo}:7`, AMBIT_ROUNDS: String(rounds), AMBIT_SETTLE_MS: '50' });
      const packetsAfter = await t.vethPackets();
      const after = (await dump()).capture.ebpf!.stats;
      expect(r.error).toBeUndefined();
      expect(r.echoed).toBe(rounds);
      // Each round is four writes: pod a → proxy → pod b → proxy → pod a, all moved by sk_msg.
      expect(after['msgRedirected']! - before['msgRedirected']!).toBeGreaterThanOrEqual(4 * rounds);
      expect(after['msgRedirectedBytes']! - before['msgRedirectedBytes']!).toBeGreaterThanOrEqual(4 * rounds * 64);
      // Through TCP, each round would put at least 2 packets on each veth; here only handshakes and closes do.
      expect(packetsAfter.a - packetsBefore.a).toBeLessThan(rounds / 20);
      expect(packetsAfter.b - packetsBefore.b).toBeLessThan(rounds / 20);
      // The same counters in Prometheus.
      const [prom] = await t.run('node', [process.execPath, CLIENT_JS], { AMBIT_REQUESTS: JSON.stringify([{ url: 'http://127.0.0.1:15000/stats/prometheus' }]) })
        .then((x) => JSON.parse(x.stdout) as Array<{ body: string }>);
      expect(prom?.body).toContain('ambit_capture_mode{mode="ebpf"} 1');
      const m = /ambit_capture_program_events\{event="msgRedirected"\} (\d+)/.exec(prom?.body ?? '');
      expect(Number(m?.[1])).toBeGreaterThanOrEqual(after['msgRedirected']!);
    });

    it.skipIf(mode !== 'ebpf')('keys short-circuited sockets by network namespace: a look-alike tuple in another pod reads and injects nothing', async () => {
      // Pod a adds pod b's address and the proxy's, and makes a connection with exactly the tuple
      // of the proxy's live upstream connection to pod b: same addresses, different netns.
      const r = await t.run('a', [process.execPath, COLLIDE_JS], {
        AMBIT_TARGET: `${VIP.echo}:7`, AMBIT_VICTIM: `${ADDR.podB}:18190`, AMBIT_NODE_NETNS: t.ns.node, AMBIT_IP: findTool('ip') ?? 'ip', AMBIT_ROUNDS: '200',
        AMBIT_ESCAPE_CGROUP: path.join(t.cgroupRoot, 'cgroup.procs'),
      });
      const out = JSON.parse(r.stdout || `{"error":${JSON.stringify(r.stderr)}}`) as { rounds: number; echoed: number; stolen: number; tuples: unknown[]; error?: string };
      expect(out.error, JSON.stringify(out)).toBeUndefined();
      expect(out.tuples.length).toBeGreaterThan(0);
      expect(out.stolen).toBe(0);
      expect(out.echoed).toBe(out.rounds);
    });

    it.skipIf(mode !== 'ebpf')('removes connection entries when connections close', async () => {
      let entries = { origByTuple: -1, socks: -1 };
      for (let i = 0; i < 50; i++) {
        entries = (await dump()).capture.ebpf!.entries;
        if (entries.origByTuple === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(entries.origByTuple).toBe(0);
      expect((await dump()).capture.ebpf!.stats['closed']).toBeGreaterThan(0);
    });

    it.skipIf(mode !== 'ebpf')('keeps capturing after the proxy is killed with SIGKILL and restarted (as 2 workers), without duplicate attachments', async () => {
      await t.stop(proxy!, true);
      // Restarted with node:cluster workers: the primary loads and owns capture, the workers serve.
      await startProxy(2);
      expect((await dump()).capture.mode).toBe('ebpf');
      const [beta] = await http([{ url: `http://${VIP.beta}/after-restart` }]);
      expect(beta?.status).toBe(200);
      expect(beta?.body?.headers?.['x-ambit-hello']).toBe('hello from pod-a');
      expect(beta?.socket).toMatchObject({ remoteAddress: VIP.beta, remotePort: 80 });
      const onA = await cgroupAttachments(t.cgroup.a);
      expect(onA.map((x) => x.attach_type).sort()).toEqual(['cgroup_inet4_connect', 'cgroup_inet4_getpeername', 'cgroup_inet6_connect', 'cgroup_inet6_getpeername', 'cgroup_sock_ops'].sort());
      const onNode = await cgroupAttachments(t.cgroup.node);
      expect(onNode.map((x) => x.attach_type).sort()).toEqual(['cgroup_getsockopt', 'cgroup_sock_ops']);
    });

    it.skipIf(mode !== 'ebpf')('detaches a pod that leaves the mesh (its cgroup dropped from the config) and keeps the other captured', async () => {
      await writeFile(configPath, meshYaml(configMode, pinDir, nftTable, false, t));
      let onB = await cgroupAttachments(t.cgroup.b);
      for (let i = 0; i < 100 && onB.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        onB = await cgroupAttachments(t.cgroup.b);
      }
      expect(onB).toEqual([]);
      const bpffs = bpffsMount()!;
      expect(existsSync(path.join(bpffs, pinDir, 'links', 'pod-test_pod-b'))).toBe(false);
      expect(existsSync(path.join(bpffs, pinDir, 'links', 'pod-test_pod-a'))).toBe(true);
      expect((await dump()).capture.pods).toEqual(['pod-a.test']);
      const [beta] = await http([{ url: `http://${VIP.beta}/still` }]);
      expect(beta?.status).toBe(200);
    });

    it('`ambit capture uninstall` leaves no program, map, pin or rule behind', async () => {
      const progs = mode === 'ebpf' ? (await bpftoolJson<Array<{ id: number; name?: string }>>('prog', 'show')).filter((p) => p.name?.startsWith('ambit_')).map((p) => p.id) : [];
      const maps = mode === 'ebpf' ? (await bpftoolJson<Array<{ id: number; name?: string }>>('map', 'show')).filter((m) => m.name?.startsWith('ambit_')).map((m) => m.id) : [];
      if (mode === 'ebpf') {
        expect(progs.length).toBeGreaterThanOrEqual(7);
        expect(maps.length).toBeGreaterThanOrEqual(7);
      } else {
        const listed = await t.run('node', [NFT!, 'list', 'table', 'inet', nftTable]);
        expect(listed.stdout).toContain('dnat ip to 10.206.0.1:15001');
      }
      await t.stop(proxy!);
      const out = await t.run('node', [process.execPath, CLI_JS, 'capture', 'uninstall', '--config', configPath]);
      expect(out.code, out.stderr).toBe(0);
      if (mode === 'ebpf') {
        expect(out.stdout).toMatch(/eBPF: removed .*links\/proxy/);
        const bpffs = bpffsMount()!;
        expect(existsSync(path.join(bpffs, pinDir))).toBe(false);
        for (const cg of [t.cgroup.a, t.cgroup.b, t.cgroup.node]) expect(await cgroupAttachments(cg)).toEqual([]);
        // The kernel frees programs and maps once the last reference goes (asynchronously): wait, bounded.
        let leftProgs: number[] = progs;
        let leftMaps: number[] = maps;
        for (let i = 0; i < 50; i++) {
          const nowProgs = new Set((await bpftoolJson<Array<{ id: number }>>('prog', 'show')).map((p) => p.id));
          const nowMaps = new Set((await bpftoolJson<Array<{ id: number }>>('map', 'show')).map((m) => m.id));
          leftProgs = progs.filter((p) => nowProgs.has(p));
          leftMaps = maps.filter((m) => nowMaps.has(m));
          if (leftProgs.length === 0 && leftMaps.length === 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(leftProgs).toEqual([]);
        expect(leftMaps).toEqual([]);
      }
      expect(out.stdout).toMatch(mode === 'nftables' ? new RegExp(`nftables: removed table inet ${nftTable}`) : /nftables: no table/);
      const listed = await t.run('node', [NFT!, 'list', 'table', 'inet', nftTable]);
      expect(listed.code).not.toBe(0);
      // Uninstalled: a connect to the VIP is no longer redirected (nothing answers it).
      const after = await ping({ AMBIT_TARGET: `${VIP.echo}:7`, AMBIT_WHO: '1', AMBIT_TIMEOUT_MS: '3000' });
      expect(after.who).toBeUndefined();
    });
  });
}
