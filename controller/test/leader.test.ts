// Two controller replicas against one real kube-apiserver: they elect a leader on a Lease, only
// the leader writes (the CA Secret, the root ConfigMap, statuses, Events) while both serve, and
// the other takes over when the leader stops (released Lease) or dies (Lease runs out).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { controlplane } from '@ambit/runtime';
import { REPO, startCluster, type TestCluster } from './support/cluster.js';
import { namespace, pod } from './support/objects.js';
import { CONTROLLER_CLI, start, type Proc } from './support/processes.js';
import { until } from './support/until.js';

interface Replica { name: string; proc: Proc; admin: number }

let cluster: TestCluster;
const replicas: Replica[] = [];

async function startReplica(name: string): Promise<Replica> {
  const proc = start(name, [CONTROLLER_CLI, '--kubeconfig', cluster.kubeconfig, '--grpc-address', '127.0.0.1', '--grpc-port', '0',
    '--admin-address', '127.0.0.1', '--admin-port', '0', '--filter-root', REPO, '--log-level', 'info',
    '--leader-lease-duration-ms', '3000', '--leader-renew-deadline-ms', '2000', '--leader-retry-period-ms', '250']);
  const admin = Number((await proc.waitFor(/admin on 127\.0\.0\.1:(\d+)/))[1]);
  const r = { name, proc, admin };
  replicas.push(r);
  return r;
}

async function state(r: Replica): Promise<{ identity: string; leader: boolean }> {
  return (await (await fetch(`http://127.0.0.1:${r.admin}/debug/nodes`)).json()) as { identity: string; leader: boolean };
}

/** Writes this replica made, from its metrics. */
async function writes(r: Replica): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${r.admin}/metrics`)).text();
  return [...text.matchAll(/^ambit_controller_writes_total\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

async function holder(): Promise<string | undefined> {
  const lease = JSON.parse(await cluster.kubectl(['-n', 'ambit-system', 'get', 'lease', 'ambit-controller', '-o', 'json'])) as { spec: { holderIdentity?: string } };
  return lease.spec.holderIdentity;
}

/** An AuthorizationPolicy with a field the controller cannot enforce: every replica reports it, the leader alone records the Event. */
const unsupported = (name: string) => ({
  apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: 'shop' },
  spec: { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['issuer/*'] } }] }] },
});

async function eventsOn(name: string): Promise<{ reportingInstance: string }[]> {
  const out = await cluster.kubectl(['-n', 'shop', 'get', 'events', '--field-selector', `involvedObject.name=${name},reason=UnsupportedField`, '-o', 'json']);
  return (JSON.parse(out) as { items: { reportingInstance: string }[] }).items;
}

/** Opens a config stream to a replica as node-1's proxy and resolves with the kinds of resources its first response carries. */
async function firstConfig(r: Replica): Promise<string[]> {
  const port = Number((await r.proc.waitFor(/gRPC \(TLS\) on 127\.0\.0\.1:(\d+)/))[1]);
  const cm = JSON.parse(await cluster.kubectl(['-n', 'ambit-system', 'get', 'configmap', 'ambit-ca-root', '-o', 'json'])) as { data: Record<string, string> };
  const token = (await cluster.kubectl(['-n', 'ambit-system', 'create', 'token', 'ambit-node', '--bound-object-kind', 'Pod', '--bound-object-name', 'ambit-node-1'])).trim();
  const client = new (controlplane.controllerProto().MeshConfig)(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(cm.data['root-cert.pem']!)), { 'grpc.ssl_target_name_override': 'ambit-controller.ambit-system.svc' });
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const call = (client as unknown as Record<string, (md: grpc.Metadata) => grpc.ClientDuplexStream<controlplane.ConfigRequest, controlplane.ConfigResponse>>).streamConfig!.call(client, md);
  try {
    return await new Promise<string[]>((resolve, reject) => {
      call.on('data', (res: controlplane.ConfigResponse) => resolve([...new Set(res.resources.map((x) => x.type))].sort()));
      call.on('error', reject);
      call.write({ node: 'node-1', responseNonce: '', appliedVersion: '', initialResourceVersions: {} });
    });
  } finally {
    call.cancel();
    client.close();
  }
}

/** A FilterBinding naming a package that is not installed: the leader writes Accepted=False in its status. */
async function refusedBindingGetsStatus(name: string): Promise<void> {
  await cluster.apply({
    apiVersion: 'ambit.dev/v1alpha1', kind: 'FilterBinding', metadata: { name, namespace: 'shop' },
    spec: { direction: 'outbound', filters: [{ package: '@ambit/filter-does-not-exist', sha256: 'a'.repeat(64), config: {} }] },
  });
  await until(`the status of FilterBinding ${name}`, async () => {
    const fb = JSON.parse(await cluster.kubectl(['-n', 'shop', 'get', 'filterbinding', name, '-o', 'json'])) as { status?: { conditions?: { type: string; status: string }[] } };
    return fb.status?.conditions?.some((c) => c.type === 'Accepted' && c.status === 'False');
  });
}

describe('controller replicas elect a leader on a Lease', () => {
  beforeAll(async () => {
    cluster = await startCluster();
    await cluster.kubectl(['apply', '-f', path.join(REPO, 'controller/crds'), '-f', path.join(REPO, 'controller/test/fixtures')]);
    await cluster.kubectl(['wait', '--for=condition=Established', 'crd/filterbindings.ambit.dev', 'crd/authorizationpolicies.security.istio.io', '--timeout=60s']);
    await cluster.apply(namespace('ambit-system'), namespace('shop', { 'ambit.dev/mesh': 'enabled' }),
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ambit-node', namespace: 'ambit-system' } },
      pod('ambit-system', 'ambit-node-1', { node: 'node-1', serviceAccount: 'ambit-node' }));
  }, 40 * 60_000);

  afterAll(async () => {
    for (const r of replicas) await r.proc.stop('SIGKILL');
    await cluster?.stop();
  });

  it('one of two replicas started together leads; it alone creates the CA and writes, both serve', async () => {
    const [a, b] = await Promise.all([startReplica('controller-a'), startReplica('controller-b')]);
    const [sa, sb] = await until('exactly one leader', async () => {
      const s = [await state(a), await state(b)];
      return s.filter((x) => x.leader).length === 1 ? s : undefined;
    });
    const [leader, follower] = sa!.leader ? [a, b] : [b, a];
    const leaderId = (sa!.leader ? sa! : sb!).identity;
    expect(await holder()).toBe(leaderId);
    // One CA, generated by the leader; the follower loaded it.
    expect(leader.proc.logs()).toMatch(/CA generated/);
    expect(follower.proc.logs()).not.toMatch(/CA generated/);
    expect(follower.proc.logs()).toMatch(/CA loaded from Secret ambit-system\/ambit-ca/);
    // Both replicas serve config streams: node-1's proxy gets its config from either.
    for (const r of [leader, follower]) expect(await firstConfig(r)).toContain('mesh');

    await cluster.apply(unsupported('policy-1'));
    // Both replicas saw the policy and found the unsupported field ...
    for (const r of [a, b]) await r.proc.waitFor(/AuthorizationPolicy shop\/policy-1: rules\[0\]\.from\[0\]\.source\.requestPrincipals: not supported/, 20_000);
    // ... and one Event records it, from the leader.
    const events = await until('the Event', async () => { const e = await eventsOn('policy-1'); return e.length > 0 ? e : undefined; });
    await refusedBindingGetsStatus('unknown-package');
    expect((await eventsOn('policy-1')).map((e) => e.reportingInstance)).toEqual([leaderId]);
    expect(events.length).toBe(1);
    expect(await writes(leader)).toBeGreaterThanOrEqual(4); // Secret, ConfigMap, Event, status
    expect(await writes(follower)).toBe(0);
    expect(follower.proc.logs()).toMatch(/node node-1 connected/);
  });

  it('the other replica takes over when the leader stops (Lease released), and again when that one dies (Lease runs out)', async () => {
    const states = await Promise.all(replicas.map(async (r) => ({ r, s: await state(r) })));
    const leader = states.find((x) => x.s.leader)!;
    const follower = states.find((x) => !x.s.leader)!;
    await leader.r.proc.stop('SIGTERM');
    expect(leader.r.proc.logs()).toMatch(/released Lease ambit-system\/ambit-controller/);
    await until('the follower leads', async () => (await state(follower.r)).leader, 20_000);
    expect(await holder()).toBe(follower.s.identity);
    // The new leader writes: an Event for a new policy comes from it.
    await cluster.apply(unsupported('policy-2'));
    const events = await until('the Event from the new leader', async () => { const e = await eventsOn('policy-2'); return e.length > 0 ? e : undefined; });
    expect(events.map((e) => e.reportingInstance)).toEqual([follower.s.identity]);
    expect(await writes(follower.r)).toBeGreaterThan(0);

    // A replica that comes back follows: the Lease is held.
    const back = await startReplica('controller-c');
    await back.proc.waitFor(/CA loaded from Secret/, 20_000);
    await until('the new replica has seen the Lease held', async () => !(await state(back)).leader && await holder() === follower.s.identity, 10_000);
    // The leader dies without releasing: the Lease runs out and the replica that came back takes it.
    await follower.r.proc.stop('SIGKILL');
    await until('the replica that came back leads', async () => (await state(back)).leader, 30_000);
    expect(await holder()).toBe((await state(back)).identity);
    // Statuses are its to write now: a new FilterBinding gets one.
    await refusedBindingGetsStatus('unknown-package-2');
    expect(await writes(back)).toBeGreaterThan(0);
  });
});
