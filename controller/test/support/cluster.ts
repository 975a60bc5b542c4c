/**
 * A real Kubernetes API server and etcd for tests, built from the Go module proxy by
 * controller/kube/build.sh (cached outside the clone) and run on loopback: no kubelet,
 * scheduler or controller-manager, so tests create pods on a node by hand and patch their
 * status as a kubelet would. Authentication: a static admin token (system:masters) and
 * ServiceAccount tokens (TokenRequest, bound to pods).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CertificateAuthority } from '@ambit/runtime';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Builds (or finds cached) kube-apiserver, etcd and kubectl; returns their folder. */
export async function kubeBinaries(): Promise<string> {
  const { stdout } = await run(path.join(REPO, 'controller/kube/build.sh'), [], { timeout: 30 * 60_000, maxBuffer: 16 << 20 });
  return stdout.trim().split('\n').pop()!;
}

export interface TestCluster {
  readonly dir: string;
  readonly bin: string;
  readonly server: string;
  readonly kubeconfig: string;
  kubectl(args: string[], input?: string): Promise<string>;
  /** kubectl apply -f - of objects. */
  apply(...objects: object[]): Promise<string>;
  /**
   * One call to the API server as the admin, without a kubectl process in between (for
   * changes that must land milliseconds apart); resolves with the status and the parsed body.
   */
  api(method: string, apiPath: string, body?: object, contentType?: string): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
}

async function waitReady(url: string, token: string, ca: string, proc: ChildProcess, logs: () => string): Promise<void> {
  const { request } = await import('node:https');
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`kube-apiserver exited (${proc.exitCode}):\n${logs().slice(-3000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(`${url}/readyz`, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.setTimeout(2000, () => req.destroy());
      req.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`kube-apiserver not ready within 90 s:\n${logs().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function startCluster(): Promise<TestCluster> {
  const bin = await kubeBinaries();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-kube-'));
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const ca = CertificateAuthority.generateRoot({ trustDomain: 'kube.test', commonName: 'test apiserver CA' });
  const serving = ca.issueServerCertificate({ dnsNames: ['localhost', 'kubernetes', 'kubernetes.default.svc'], ipAddresses: ['127.0.0.1'] });
  const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const token = 'ambit-test-admin-token';
  const f = (n: string) => path.join(dir, n);
  await writeFile(f('ca.pem'), ca.rootsPem());
  await writeFile(f('serving.pem'), serving.certChainPem);
  await writeFile(f('serving-key.pem'), serving.keyPem, { mode: 0o600 });
  await writeFile(f('sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  await writeFile(f('sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  await writeFile(f('tokens.csv'), `${token},admin,admin,"system:masters"\n`);
  let logs = '';
  const keep = (p: ChildProcess) => {
    p.stdout?.on('data', (d: Buffer) => { logs = (logs + d.toString()).slice(-200_000); });
    p.stderr?.on('data', (d: Buffer) => { logs = (logs + d.toString()).slice(-200_000); });
  };
  const etcd = spawn(path.join(bin, 'etcd'), [
    '--data-dir', f('etcd'), '--listen-client-urls', `http://127.0.0.1:${etcdPort}`, '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `default=http://127.0.0.1:${peerPort}`, '--unsafe-no-fsync', '--log-level', 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  keep(etcd);
  const api = spawn(path.join(bin, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`, '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
    `--tls-cert-file=${f('serving.pem')}`, `--tls-private-key-file=${f('serving-key.pem')}`, `--token-auth-file=${f('tokens.csv')}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local', `--service-account-key-file=${f('sa.pub')}`,
    `--service-account-signing-key-file=${f('sa.key')}`, '--service-cluster-ip-range=10.0.0.0/24', '--authorization-mode=RBAC',
    '--allow-privileged=true', '--endpoint-reconciler-type=none', '--disable-admission-plugins=ServiceAccount', '--v=1',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  keep(api);
  const server = `https://127.0.0.1:${apiPort}`;
  const stopAll = async () => {
    for (const p of [api, etcd]) {
      if (p.exitCode === null) {
        p.kill('SIGTERM');
        await new Promise((r) => { p.once('exit', r); setTimeout(r, 5000); });
      }
    }
  };
  try {
    await waitReady(server, token, ca.rootsPem(), api, () => logs);
  } catch (e) {
    await stopAll();
    throw e;
  }
  const kubeconfig = f('kubeconfig');
  await writeFile(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'test',
    clusters: [{ name: 'test', cluster: { server, 'certificate-authority': f('ca.pem') } }],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'test', context: { cluster: 'test', user: 'admin' } }],
  }));
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    return new Promise((resolve, reject) => {
      const p = spawn(path.join(bin, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')}: exit ${code}: ${err}`))));
      p.stdin.end(input ?? '');
    });
  };
  const caPem = ca.rootsPem();
  const callApi = async (method: string, apiPath: string, body?: object, contentType = 'application/json') => {
    const { request } = await import('node:https');
    const data = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const req = request(`${server}${apiPath}`, {
        method, ca: caPem,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(data ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}) },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { text += d; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) as unknown : undefined }));
      });
      req.on('error', reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${apiPath}: no answer within 30 s`)));
      req.end(data);
    });
  };
  return {
    dir, bin, server, kubeconfig, kubectl, api: callApi,
    apply: (...objects) => kubectl(['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n')),
    async stop() {
      await stopAll();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
