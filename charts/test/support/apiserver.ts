// A real kube-apiserver and etcd for the chart's install test (shared/KUBERNETES-TESTING.md): the
// binaries from controller/kube/build.sh (or AMBIT_KUBE_BIN), certificates made with openssl, an admin
// kubeconfig (O=system:masters). No kubelet, scheduler or controller-manager run.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './helm.js';

const execFileP = promisify(execFile);
const BUILD = path.join(REPO, 'controller/kube/build.sh');

/** The folder holding kube-apiserver and etcd, or why there is none. */
export function kubeBinaries(): { dir: string } | { skip: string } {
  const given = process.env['AMBIT_KUBE_BIN'];
  if (given) return existsSync(path.join(given, 'kube-apiserver')) ? { dir: given } : { skip: `AMBIT_KUBE_BIN=${given} has no kube-apiserver` };
  if (!existsSync(BUILD)) return { skip: 'controller/kube/build.sh (the kube-apiserver build) is not in this checkout' };
  try {
    return { dir: execFileSync(BUILD, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 1_800_000 }).trim() };
  } catch (e) {
    return { skip: `controller/kube/build.sh failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

export class ApiServer {
  private constructor(readonly dir: string, readonly url: string, readonly kubeconfig: string, readonly caFile: string,
    private readonly procs: ChildProcess[], private readonly logs: () => string) {}

  /** etcd + kube-apiserver on free loopback ports, ready (/readyz) on return. */
  static async start(bin: string, kubectl: string): Promise<ApiServer> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ambit-apiserver-'));
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    // Certificates: a CA, the serving certificate, an admin client (system:masters), the ServiceAccount key pair.
    openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=ambit-test-ca');
    writeFileSync(path.join(dir, 'serving.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n');
    openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'serving.key', '-out', 'serving.csr', '-subj', '/CN=kube-apiserver');
    openssl(dir, 'x509', '-req', '-in', 'serving.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'serving.crt', '-days', '2', '-extfile', 'serving.ext');
    writeFileSync(path.join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
    openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'admin.key', '-out', 'admin.csr', '-subj', '/O=system:masters/CN=ambit-test-admin');
    openssl(dir, 'x509', '-req', '-in', 'admin.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'admin.crt', '-days', '2', '-extfile', 'client.ext');
    openssl(dir, 'genrsa', '-out', 'sa.key', '2048');
    openssl(dir, 'rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');

    let out = '';
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-20_000); };
    const procs: ChildProcess[] = [];
    const startProc = (cmd: string, args: string[]) => {
      const p = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      p.stdout!.on('data', keep);
      p.stderr!.on('data', keep);
      procs.push(p);
    };
    const etcd = `http://127.0.0.1:${etcdPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    startProc(path.join(bin, 'etcd'), ['--data-dir', path.join(dir, 'etcd'), '--listen-client-urls', etcd, '--advertise-client-urls', etcd,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `default=${peer}`, '--unsafe-no-fsync', '--log-level', 'error']);
    startProc(path.join(bin, 'kube-apiserver'), ['--etcd-servers', etcd, '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`, '--tls-cert-file=serving.crt', '--tls-private-key-file=serving.key', '--client-ca-file=ca.crt',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local', '--service-account-key-file=sa.pub',
      '--service-account-signing-key-file=sa.key', '--service-cluster-ip-range=10.0.0.0/24', '--authorization-mode=RBAC',
      '--allow-privileged=true', '--endpoint-reconciler-type=none', '--v=0']);
    const url = `https://127.0.0.1:${apiPort}`;
    const kubeconfig = path.join(dir, 'admin.kubeconfig');
    writeFileSync(kubeconfig, [
      'apiVersion: v1', 'kind: Config', 'current-context: test',
      `clusters: [{ name: test, cluster: { server: '${url}', certificate-authority: '${path.join(dir, 'ca.crt')}' } }]`,
      `users: [{ name: admin, user: { client-certificate: '${path.join(dir, 'admin.crt')}', client-key: '${path.join(dir, 'admin.key')}' } }]`,
      'contexts: [{ name: test, context: { cluster: test, user: admin } }]', '',
    ].join('\n'));
    const server = new ApiServer(dir, url, kubeconfig, path.join(dir, 'ca.crt'), procs, () => out);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ok = await execFileP(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/readyz'], { timeout: 5_000 }).then(() => true, () => false);
      if (ok) break;
      if (procs.some((p) => p.exitCode !== null) || Date.now() > deadline) {
        await server.stop();
        throw new Error(`kube-apiserver did not become ready: ${out.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    return server;
  }

  /** A kubeconfig authenticating with `token` (a ServiceAccount's). */
  kubeconfigWithToken(name: string, token: string): string {
    const file = path.join(this.dir, `${name}.kubeconfig`);
    writeFileSync(file, [
      'apiVersion: v1', 'kind: Config', 'current-context: test',
      `clusters: [{ name: test, cluster: { server: '${this.url}', certificate-authority: '${this.caFile}' } }]`,
      `users: [{ name: ${name}, user: { token: '${token}' } }]`,
      'contexts: [{ name: test, context: { cluster: test, user: ' + name + ' } }]', '',
    ].join('\n'));
    return file;
  }

  output(): string { return this.logs(); }

  async stop(): Promise<void> {
    for (const p of [...this.procs].reverse()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
