// Two node proxies (`ambit run`) in two network namespaces joined by a veth pair, with
// capture by nftables in both, as in an ambient mesh:
//
//   ns1 (node-1, veth 10.205.0.1)                         ns2 (node-2, veth 10.205.0.2)
//   client 10.205.1.1 ─connect 10.96.5.x:80─▶ nft redirect ─▶ node-1 :15001
//        ──HBONE to 10.205.2.1:15008 (TLS 1.3 as client-sa, expecting server-sa) over the veth
//        ──▶ node-2's capture (nft table inet <t>_hbone: a workload's :15008 to the HBONE
//        listener) ─▶ node-2 :15008, presenting server-sa's certificate
//        ──▶ inbound filters (mtls STRICT, peer) ──▶ server 10.205.2.1:8080
//   client ─plaintext to 10.205.2.1:8080 over the veth─▶ nft redirect ─▶ node-2 :15006 (inbound)
//        ──▶ mtls: STRICT refuses; the `legacy` workload (PERMISSIVE) takes it, identity absent
//
// tcpdump on node-1's veth shows what crosses: only TCP to the workload's :15008, TLS records,
// and never the request's marker; the same capture of a plaintext request does show the marker.
// The IPv6 workload is dialed at [fd05::21]:15008 over the veth's IPv6 addresses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as addon from '@ambit/addon';
import { buildFilter } from '@ambit/filter-sdk/build';
import { CertificateAuthority } from '@ambit/runtime';
import { cgroup2Mount } from '../src/capture/mounts.js';
import { REPO } from './fixtures.js';
import { findTool, NFT, netnsSkipReason } from './support/netns.js';
import { NetnsLab, type LabProcess } from './support/netns/lab.js';
import { tcpSegments } from './support/pcap.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const UPSTREAMS_JS = path.join(here, 'support/netns/upstreams.mjs');
const CLIENT_JS = path.join(here, 'support/netns/client.mjs');
const CLI_JS = path.join(REPO, 'runtime/dist/cli.js');
const PEER_DIR = path.join(REPO, 'runtime/test/fixtures/peer');
const MTLS_DIR = path.join(REPO, 'filters/mtls');
const TCPDUMP = findTool('tcpdump');

function skipReason(): string | undefined {
  const netns = netnsSkipReason();
  if (netns) return netns;
  if (!addon.available) return `the native addon that reads SO_ORIGINAL_DST is unavailable: ${addon.unavailableReason ?? 'unknown reason'}`;
  if (!TCPDUMP) return '`tcpdump` is not installed (apt-get install -y tcpdump): the test captures the veth';
  if (!cgroup2Mount()) return 'cgroup2 is not mounted: node 2\'s server workload is enrolled by its cgroup';
  return undefined;
}
const skip = skipReason();

const TD = 'mesh.test';
const NODE1 = '10.205.0.1';
const NODE2 = '10.205.0.2';
const NODE1_6 = 'fd06::1';
const NODE2_6 = 'fd06::2';
const CLIENT = { address: '10.205.1.1', identity: `spiffe://${TD}/ns/test/sa/client-sa` };
const SERVER = { address: '10.205.2.1', port: 8080 };
const LEGACY = { address: '10.205.2.2', port: 8080 };
const SERVER6 = { address: 'fd05::21', port: 8080 };
const VIP = { http: '10.96.5.1', raw: '10.96.5.2', v6: '10.96.5.3' };

function meshYaml(node: 'node-1' | 'node-2', caDir: string, o: { serverCgroup: string; nftTable: string }): string {
  const listeners = node === 'node-1'
    ? `outbound: { address: 0.0.0.0, port: 15001 }
  inbound: { address: 127.0.0.1, port: 15006 }
  admin: { address: 127.0.0.1, port: 15000 }
  hbone: { address: ${NODE1}, port: 15008 }`
    : `outbound: { address: 127.0.0.1, port: 15001 }
  inbound: { address: 0.0.0.0, port: 15006 }
  admin: { address: ${NODE2}, port: 15000 }
  hbone: { address: "::", port: 15008 }`;
  return `
node: ${node}
trustDomain: ${TD}
identity:
  ca: { dir: ${JSON.stringify(caDir)} }
proxy:
  ${listeners}
  native: { threads: 1 }
${node === 'node-2' ? `capture: { mode: nftables, nftTable: ${o.nftTable} }
` : ''}nodes:
  - { name: node-1, address: ${NODE1} }
  - { name: node-2, address: ${NODE2} }
workloads:
  - { name: client, namespace: test, serviceAccount: client-sa, address: ${CLIENT.address}, node: node-1 }
  - { name: server, namespace: test, serviceAccount: server-sa, address: ${SERVER.address}, node: node-2, labels: { app: server }, cgroup: ${o.serverCgroup} }
  - { name: legacy, namespace: test, serviceAccount: legacy-sa, address: ${LEGACY.address}, node: node-2, labels: { app: legacy } }
  - { name: server6, namespace: test, serviceAccount: server-sa, address: "${SERVER6.address}", node: node-2, labels: { app: server6 } }
services:
  - name: server
    namespace: test
    vip: ${VIP.http}
    selector: { app: server }
    ports: [{ port: 80, targetPort: ${SERVER.port}, protocol: http }]
  - name: server-raw
    namespace: test
    vip: ${VIP.raw}
    selector: { app: server }
    ports: [{ port: 80, targetPort: ${SERVER.port}, protocol: tcp }]
  - name: server6
    namespace: test
    vip: ${VIP.v6}
    selector: { app: server6 }
    ports: [{ port: 80, targetPort: ${SERVER6.port}, protocol: http }]
bindings:
  - name: inbound-policy
    target: { namespace: test }
    direction: inbound
    filters:
      - ref: ${JSON.stringify(MTLS_DIR)}
        deadlineMs: 5000  # generous: a loaded test machine must not turn into filter timeouts
        config:
          mode: STRICT
          overrides: [{ namespace: test, workload: legacy, mode: PERMISSIVE }]
          allowedTrustDomains: [${TD}]
      - ref: ${JSON.stringify(PEER_DIR)}
        deadlineMs: 5000
`;
}

interface Result { status?: number; headers?: Record<string, string>; body?: unknown; error?: string }
interface Echo { upstream: string; path: string; headers: Record<string, string> }
type AccessLine = Record<string, unknown> & { denied?: string | null; denied_reason?: string | null };

describe.skipIf(skip !== undefined)(
  `two node proxies in network namespaces, mTLS over a veth${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    const tag = randomBytes(3).toString('hex');
    const ns1 = `amb5-n1-${tag}`;
    const ns2 = `amb5-n2-${tag}`;
    const veth1 = `amb5a${tag}`;
    const veth2 = `amb5b${tag}`;
    const nftTable = `amb5cap${tag}`;
    const serverCgroup = path.join(cgroup2Mount() ?? '/nonexistent', `amb5-server-${tag}`);
    const lab = new NetnsLab();
    let dir = '';
    const proxies: LabProcess[] = [];
    const marker = `AMBIT-MARKER-${randomBytes(8).toString('hex')}`;

    const client = async (requests: Array<{ url: string; headers?: Record<string, string> }>, waitReady?: string): Promise<Result[]> => {
      const env: NodeJS.ProcessEnv = { ...process.env, AMBIT_REQUESTS: JSON.stringify(requests) };
      if (waitReady) { env['AMBIT_WAIT_READY'] = waitReady; env['AMBIT_WAIT_MS'] = '30000'; }
      return JSON.parse(await lab.exec(ns1, process.execPath, [CLIENT_JS], { env, timeoutMs: 60_000 })) as Result[];
    };

    /** Runs `requests` from the client while tcpdump watches node-1's veth; the segments it saw. */
    async function captured(name: string, requests: Array<{ url: string; headers?: Record<string, string> }>): Promise<{ results: Result[]; segments: ReturnType<typeof tcpSegments>; raw: Buffer }> {
      const file = path.join(dir, `${name}.pcap`);
      const dump = lab.start(ns1, `tcpdump-${name}`, TCPDUMP!, ['-i', veth1, '--immediate-mode', '-U', '-s', '0', '-w', file, 'tcp']);
      await dump.waitFor('listening on');
      const results = await client(requests);
      await lab.stop(dump, 'SIGINT');
      const raw = await readFile(file);
      return { results, segments: tcpSegments(raw), raw };
    }

    const accessLines = async (node: string): Promise<AccessLine[]> => {
      const text = await readFile(path.join(dir, `${node}.access.log`), 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as AccessLine);
    };

    beforeAll(async () => {
      if (!existsSync(CLI_JS)) throw new Error(`${CLI_JS} is missing: run \`npm run build\` first`);
      // Built once per checkout, like the other test filters (AMBIT_TEST_REBUILD=1 forces it).
      for (const d of [PEER_DIR, MTLS_DIR]) {
        if (!existsSync(path.join(d, 'dist/manifest.json')) || process.env.AMBIT_TEST_REBUILD) await buildFilter({ dir: d });
      }
      try {
        dir = await mkdtemp(path.join(os.tmpdir(), 'amb5-netns-'));
        // One CA for the mesh, generated here into a folder both nodes load.
        await CertificateAuthority.loadOrCreate(path.join(dir, 'ca'), { trustDomain: TD });
        // The server is enrolled (a cgroup of its own), so node-2's capture is on: with identity,
        // that includes inbound HBONE to its workloads' :15008.
        await mkdir(serverCgroup);
        for (const n of ['node-1', 'node-2'] as const) await writeFile(path.join(dir, `${n}.yaml`), meshYaml(n, path.join(dir, 'ca'), { serverCgroup: path.relative(cgroup2Mount()!, serverCgroup), nftTable }));

        await lab.namespace(ns1);
        await lab.namespace(ns2);
        await lab.veth({ ns: ns1, ifname: veth1, cidr: `${NODE1}/24` }, { ns: ns2, ifname: veth2, cidr: `${NODE2}/24` });
        await lab.ip('-n', ns1, 'addr', 'add', `${CLIENT.address}/32`, 'dev', 'lo');
        await lab.ip('-n', ns2, 'addr', 'add', `${SERVER.address}/32`, 'dev', 'lo');
        await lab.ip('-n', ns2, 'addr', 'add', `${LEGACY.address}/32`, 'dev', 'lo');
        await lab.ip('-n', ns2, 'addr', 'add', `${SERVER6.address}/128`, 'dev', 'lo', 'nodad');
        await lab.ip('-n', ns1, 'route', 'add', '10.205.2.0/24', 'via', NODE2);
        await lab.ip('-n', ns1, 'addr', 'add', `${NODE1_6}/64`, 'dev', veth1, 'nodad');
        await lab.ip('-n', ns2, 'addr', 'add', `${NODE2_6}/64`, 'dev', veth2, 'nodad');
        await lab.ip('-n', ns1, 'route', 'add', `${SERVER6.address}/128`, 'via', NODE2_6);
        await lab.ip('-n', ns2, 'route', 'add', '10.205.1.0/24', 'via', NODE1);
        // Service VIPs are local in ns1, with the client's address as source.
        await lab.ip('-n', ns1, 'route', 'add', 'local', '10.96.5.0/24', 'dev', 'lo', 'src', CLIENT.address);
        // Capture: outbound to the VIPs in ns1; inbound to the workloads in ns2 (arriving over the veth).
        await lab.exec(ns1, NFT, ['-f', '-'], { input: `table ip amb5_capture {\n chain out {\n  type nat hook output priority -100; policy accept;\n  ip daddr 10.96.5.0/24 tcp dport 80 redirect to :15001\n }\n}\n` });
        await lab.exec(ns2, NFT, ['-f', '-'], { input: `table ip amb5_capture {\n chain in {\n  type nat hook prerouting priority -100; policy accept;\n  ip daddr 10.205.2.0/24 tcp dport 8080 redirect to :15006\n }\n}\n` });

        const up = lab.start(ns2, 'upstreams', process.execPath, [UPSTREAMS_JS], {
          AMBIT_UPSTREAMS: `server=${SERVER.address}:${SERVER.port},legacy=${LEGACY.address}:${LEGACY.port},server6=${SERVER6.address}:${SERVER6.port}`,
        });
        await up.waitFor('READY\n');
        for (const [n, ns] of [['node-2', ns2], ['node-1', ns1]] as const) {
          proxies.push(lab.start(ns, n, process.execPath, [CLI_JS, 'run', '--config', path.join(dir, `${n}.yaml`), '--workers', '1', '--access-log', path.join(dir, `${n}.access.log`), '--log-level', 'info']));
        }
        await Promise.all(proxies.map((p) => p.waitFor('admin API on')));
        // Both ready, seen from ns1 (node-2's admin listens on its veth address).
        await client([], `http://127.0.0.1:15000/ready`);
        await client([], `http://${NODE2}:15000/ready`);
      } catch (e) {
        const logs = proxies.map((p) => `--- ${p.name}\n${p.output()}`).join('\n');
        await lab.cleanup();
        throw new Error(`${(e as Error).message}\n${logs}`);
      }
    });

    afterAll(async () => {
      await lab.cleanup();
      await rmdir(serverCgroup).catch(() => undefined);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('a request from the workload on node 1 crosses the veth only as TLS to :15008 and arrives with its identity', async () => {
      const { results, segments, raw } = await captured('hbone', [
        { url: `http://${VIP.http}/l7/${marker}`, headers: { 'x-marker': marker } },
        { url: `http://${VIP.raw}/l4/${marker}`, headers: { 'x-marker': marker } },
      ]);
      const [l7, l4] = results as [Result, Result];
      expect(l7.status, JSON.stringify(l7)).toBe(200);
      expect(l4.status, JSON.stringify(l4)).toBe(200);
      for (const r of [l7, l4]) {
        const echo = r.body as Echo;
        expect(echo.upstream).toBe('server');
        expect(echo.headers['x-marker']).toBe(marker);
        // node-2's inbound filters were given the identity from the client's certificate.
        expect(echo.headers['x-peer-identity']).toBe(CLIENT.identity);
        expect(echo.headers['x-peer-workload']).toBe('test/client');
      }
      // What crossed the veth: TCP between node 1 and the server workload's :15008 only, TLS
      // records only, no marker.
      const withData = segments.filter((s) => s.payload.length > 0);
      expect(withData.length).toBeGreaterThan(4);
      for (const s of segments) {
        expect([s.srcPort, s.dstPort]).toContain(15008);
        expect([s.src, s.dst].sort()).toEqual([NODE1, SERVER.address].sort());
      }
      // Each connection's byte stream, each way, is a run of TLS records (content type
      // 20-23, version 3.x), from its first byte to its last.
      const flows = new Map<string, Buffer[]>();
      for (const seg of withData) {
        const key = `${seg.src}:${seg.srcPort}>${seg.dst}:${seg.dstPort}`;
        flows.set(key, [...(flows.get(key) ?? []), seg.payload]);
      }
      expect(flows.size).toBeGreaterThanOrEqual(2);
      for (const [key, parts] of flows) {
        const stream = Buffer.concat(parts);
        let at = 0;
        let records = 0;
        while (at + 5 <= stream.length) {
          expect(stream[at], `${key} at ${at}`).toBeGreaterThanOrEqual(20);
          expect(stream[at], `${key} at ${at}`).toBeLessThanOrEqual(23);
          expect(stream[at + 1], `${key} at ${at}`).toBe(3);
          at += 5 + stream.readUInt16BE(at + 3);
          records++;
        }
        expect(at, key).toBe(stream.length);
        expect(records, key).toBeGreaterThan(0);
      }
      expect(raw.includes(marker)).toBe(false);
    });

    it('the same capture sees a plaintext request\'s marker (the check above can fail)', async () => {
      const { results, raw } = await captured('plaintext', [{ url: `http://${LEGACY.address}:${LEGACY.port}/control/${marker}`, headers: { 'x-marker': marker } }]);
      expect(results[0]!.status).toBe(200);
      expect(raw.includes(marker)).toBe(true);
    });

    it('an IPv6 workload on node 2 is reached through the tunnel (CONNECT [fd05::21]:8080)', async () => {
      const [r] = await client([{ url: `http://${VIP.v6}/v6` }]) as [Result];
      expect(r.status, JSON.stringify(r)).toBe(200);
      const echo = r.body as Echo & { peer: string };
      expect(echo.upstream).toBe('server6');
      expect(echo.headers['x-peer-identity']).toBe(CLIENT.identity);
      // Delivered by node-2 on its own IPv6 loopback route.
      expect(echo.peer).toMatch(/^fd05::21:\d+$/);
    });

    it('STRICT refuses plaintext to node 2\'s workload with the reason; PERMISSIVE lets it in without an identity', async () => {
      const [strict, permissive] = await client([
        { url: `http://${SERVER.address}:${SERVER.port}/plaintext` },
        { url: `http://${LEGACY.address}:${LEGACY.port}/plaintext` },
      ]) as [Result, Result];
      // Sent from ns1 outside the mesh capture: its source is node-1's veth address.
      expect(strict.status).toBeUndefined();
      expect(strict.error).toMatch(/ECONNRESET|socket hang up|EPIPE/);
      expect(permissive.status).toBe(200);
      expect((permissive.body as Echo).headers['x-peer-identity']).toBe('none');
      let denied: AccessLine | undefined;
      for (let i = 0; i < 50 && !denied; i++) {
        denied = (await accessLines('node-2')).find((l) => l.denied === 'mtls');
        if (!denied) await new Promise((r) => setTimeout(r, 100));
      }
      expect(denied?.denied_reason).toBe(`mtls: plaintext connection to test/server refused: STRICT mTLS (from ${NODE1})`);
    });

    it('node 2\'s capture redirects its workloads\' :15008 to its HBONE listener, and /config_dump says so', async () => {
      const [r] = await client([{ url: `http://${NODE2}:15000/config_dump` }]);
      const dump = r!.body as { capture: { mode: string; hboneInbound?: { table: string; port: number; listener: { address: string; port: number }; workloads: number } } };
      expect(dump.capture.mode).toBe('nftables');
      // server, legacy and server6: the three workloads of node 2.
      expect(dump.capture.hboneInbound).toEqual({ table: `${nftTable}_hbone`, port: 15008, listener: { address: '::', port: 15008 }, workloads: 3 });
      const ruleset = await lab.exec(ns2, NFT, ['list', 'table', 'inet', `${nftTable}_hbone`]);
      expect(ruleset).toMatch(/ip daddr @workloads4 tcp dport 15008 redirect to :15008/);
      expect(ruleset).toContain(SERVER.address);
    });

    it('node 1\'s /config_dump lists its certificates (SPIFFE ID, fingerprint, expiry) and the tunnels, no key', async () => {
      const [r] = await client([{ url: 'http://127.0.0.1:15000/config_dump' }]);
      const text = JSON.stringify(r!.body);
      expect(text).not.toMatch(/PRIVATE KEY/);
      const dump = r!.body as { identity: { store: { certificates: Array<{ identity: string; current: { fingerprint256: string; notAfter: string } }> }; hbone: { client: { tunnelsTotal: number; sessionsTotal: number } } } };
      const ids = dump.identity.store.certificates.map((c) => c.identity).sort();
      // Its workload's only: no node identity.
      expect(ids).toEqual([CLIENT.identity]);
      expect(dump.identity.store.certificates[0]!.current.fingerprint256).toMatch(/^[0-9A-F:]{95}$/);
      expect(dump.identity.hbone.client.tunnelsTotal).toBeGreaterThanOrEqual(2);
      // One session per destination workload address (10.205.2.1 and fd05::21), shared by its tunnels.
      expect(dump.identity.hbone.client.sessionsTotal).toBe(2);
    });
  },
);
