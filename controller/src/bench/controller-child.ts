/**
 * The controller side of the scale benchmark, in its own process (so its memory is its
 * own): the mesh model filled with a synthetic cluster and the real gRPC distribution,
 * listening in plaintext on loopback. Node authentication is the one part played: the
 * bench's nodes present `node-<k>` as their token instead of a reviewed ServiceAccount token.
 */
import * as grpc from '@grpc/grpc-js';
import { CertificateAuthority } from '@ambit/runtime';
import { Distributor } from '../distribution/server.js';
import { MeshModel } from '../model/mesh.js';
import { populate, syntheticNode, syntheticPod, type Shape } from './synthetic.js';

type Msg =
  | { type: 'start'; shape: Shape; nodes: number }
  | { type: 'change'; id: number; kind: 'pod'; namespace: number; pod: number }
  | { type: 'change'; id: number; kind: 'node'; node: number; port: number }
  | { type: 'change'; id: number; kind: 'roots' }
  | { type: 'memory' };

let model: MeshModel;
let distributor: Distributor;
let shape: Shape;
const send = (m: object) => process.send!(m);

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

process.on('message', (m: Msg) => {
  if (m.type === 'start') {
    shape = m.shape;
    const started = performance.now();
    const ca = CertificateAuthority.generateRoot({ trustDomain: 'cluster.local' });
    model = new MeshModel({ trustDomain: 'cluster.local', rootNamespace: 'ambit-system', certTtlMs: 86_400_000, roots: ca.rootsPem() }, { report: () => undefined });
    populate(model, m.shape, m.nodes);
    model.table.takeChanges();
    model.takeDirtyNodes();
    const built = performance.now() - started;
    distributor = new Distributor(model, {
      authenticate: async (auth) => ({ node: (auth ?? '').replace(/^Bearer\s+/, ''), user: 'bench' }),
    }, () => { throw new Error('no CSRs in this benchmark'); }, {
      ack: () => undefined, nack: () => undefined, connected: () => undefined, disconnected: () => undefined, log: () => undefined,
    });
    const server = new grpc.Server();
    distributor.register(server);
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, port) => {
      if (e) throw e;
      send({ type: 'ready', port, buildMs: built, resources: model.table.size });
    });
    return;
  }
  if (m.type === 'change') {
    let key: string;
    if (m.kind === 'pod') {
      const pod = syntheticPod(shape, m.namespace, m.pod, `v${m.id + 2}`);
      model.pod('update', pod);
      key = `workload/${pod.metadata!.name}.${pod.metadata!.namespace}`;
    } else if (m.kind === 'node') {
      model.node('update', syntheticNode(m.node, m.port));
      key = `node/node-${m.node}`;
    } else {
      // The trust bundle rotated: every node is concerned.
      model.setRoots(CertificateAuthority.generateRoot({ trustDomain: 'cluster.local' }).rootsPem());
      key = 'mesh/mesh';
    }
    const version = model.table.get(key)!.version;
    // As the controller does: changes gathered for 10 ms, then pushed.
    setTimeout(() => distributor.push(), 10);
    send({ type: 'changed', id: m.id, key, version });
    return;
  }
  if (m.type === 'memory') {
    gc();
    const u = process.memoryUsage();
    send({ type: 'memory', rss: u.rss, heapUsed: u.heapUsed });
  }
});
send({ type: 'hello' });
