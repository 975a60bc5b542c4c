// The config stream between the controller's Distributor and the node proxy's ConfigStream,
// over real gRPC on loopback, without a cluster (the model is fed directly; node
// authentication is played by a stand-in that takes the node's name as its token):
// versions and ACKs, a NACK reaching the controller, reconnecting with backoff, and a
// reconnect that resends nothing when nothing changed.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { controlplane } from '@ambit/runtime';
import { Distributor, MeshModel } from '@ambit/controller';

const ns: V1Namespace = { metadata: { name: 'a', labels: { 'ambit.dev/mesh': 'enabled' } } };
const pod = (name: string, ip: string): V1Pod => ({ metadata: { name, namespace: 'a', labels: { app: name } }, spec: { nodeName: 'node-1', containers: [] }, status: { phase: 'Running', podIP: ip } });

interface Controller { port: number; model: MeshModel; distributor: Distributor; acks: string[]; nacks: controlplane.ErrorDetail[]; close(): void }

async function controller(port = 0, model?: MeshModel): Promise<Controller> {
  const m = model ?? new MeshModel({ trustDomain: 'cluster.local', rootNamespace: 'ambit-system', certTtlMs: 1000, roots: 'ROOTS' }, { report: () => undefined });
  const acks: string[] = [];
  const nacks: controlplane.ErrorDetail[] = [];
  const d = new Distributor(m, { authenticate: async (auth) => ({ node: (auth ?? '').replace(/^Bearer /, ''), user: 'test' }) }, () => { throw new Error('no CSRs here'); }, {
    ack: (_n, v) => acks.push(v), nack: (_n, e) => nacks.push(e), connected: () => undefined, disconnected: () => undefined, log: () => undefined,
  });
  const server = new grpc.Server();
  d.register(server);
  const bound = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return { port: bound, model: m, distributor: d, acks, nacks, close: () => server.forceShutdown() };
}

const waitFor = async (what: string, f: () => boolean, ms = 10_000) => {
  for (const end = Date.now() + ms; !f();) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

let cleanup: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function client(port: number): Promise<{ stream: controlplane.ConfigStream; updates: controlplane.PendingConfig[]; logs: string[] }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-stream-'));
  await writeFile(path.join(dir, 'token'), 'node-1');
  const logs: string[] = [];
  const stream = new controlplane.ConfigStream({
    connection: { address: `127.0.0.1:${port}`, tokenFile: path.join(dir, 'token') }, node: 'node-1',
    backoff: { initialMs: 100, maxMs: 400, jitter: 0 }, log: (_l, m) => logs.push(m),
  });
  const updates: controlplane.PendingConfig[] = [];
  stream.on('update', (p) => updates.push(p));
  await stream.start();
  cleanup.push(async () => { stream.close(); await rm(dir, { recursive: true, force: true }); });
  return { stream, updates, logs };
}

describe('config stream', () => {
  it('sends what changed with versions; ACKs and NACKs reach the controller', async () => {
    const c = await controller();
    cleanup.push(() => c.close());
    c.model.namespace('add', ns);
    c.model.pod('add', pod('web', '10.1.0.1'));
    const { stream, updates } = await client(c.port);
    const first = await stream.first();
    expect(stream.resources.version('workload/web.a')).toBeDefined();
    stream.ack(first);
    await waitFor('the ACK', () => c.acks.length === 1);
    c.model.pod('add', pod('api', '10.1.0.2'));
    c.distributor.push();
    await waitFor('the second response', () => updates.length === 2);
    expect(stream.resources.version('workload/api.a')).toBeDefined();
    stream.nack(updates[1]!, { code: 'AMBIT_ERR_MESH_CONFIG', message: 'no', issues: [{ resource: 'workload/api.a', pointer: '/address', message: 'bad' }] });
    await waitFor('the NACK', () => c.nacks.length === 1);
    expect(c.nacks[0]!.issues[0]).toEqual({ resource: 'workload/api.a', pointer: '/address', message: 'bad' });
    // The node said which version it still serves.
    expect(c.distributor.connectedNodes()[0]!.ackedVersion).toBe(first.systemVersion);
    c.model.pod('delete', pod('api', '10.1.0.2'));
    c.distributor.push();
    await waitFor('the removal', () => stream.resources.version('workload/api.a') === undefined);
  });

  it('reconnects with backoff while the controller is away, and gets only what changed meanwhile', async () => {
    const c1 = await controller();
    c1.model.namespace('add', ns);
    c1.model.pod('add', pod('web', '10.1.0.1'));
    const { stream, updates, logs } = await client(c1.port);
    stream.ack(await stream.first());
    c1.close();
    await waitFor('three reconnect attempts', () => logs.filter((l) => l.includes('reconnecting')).length >= 3);
    const delays = logs.filter((l) => l.includes('reconnecting')).map((l) => Number(/reconnecting in (\d+) ms/.exec(l)![1]));
    expect(delays.slice(0, 3)).toEqual([100, 200, 400]);
    // A new controller with the same state plus one pod: the node gets that pod only.
    const c2 = await controller(c1.port, c1.model);
    cleanup.push(() => c2.close());
    c2.model.pod('add', pod('api', '10.1.0.2'));
    c2.model.table.takeChanges();
    c2.model.takeDirtyNodes();
    const before = updates.length;
    const sizes: string[][] = [];
    const apply = stream.resources.apply.bind(stream.resources);
    stream.resources.apply = (r, removed) => { sizes.push(r.map((x) => `${x.type}/${x.name}`)); apply(r, removed); };
    await waitFor('the reconnect', () => updates.length === before + 1);
    expect(sizes).toEqual([['workload/api.a']]);
    await new Promise((r) => setTimeout(r, 300));
    expect(updates.length).toBe(before + 1);
  });
});
