// The controller's model and per-node diffs, without a cluster: which resources a node
// receives (its scope), and that updates are incremental and removals are sent.
import { describe, expect, it } from 'vitest';
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { MeshModel } from '@ambit/controller';
import { NodeSession } from '../src/distribution/session.js';

const ns = (name: string, reaches?: string): V1Namespace => ({ metadata: { name, labels: { 'ambit.dev/mesh': 'enabled' }, ...(reaches ? { annotations: { 'ambit.dev/reaches': reaches } } : {}) } });
const pod = (namespace: string, name: string, node: string, ip: string, labels: Record<string, string> = { app: name }): V1Pod => ({
  metadata: { name, namespace, uid: '7c1e0000-0000-4000-8000-000000000001', labels },
  spec: { nodeName: node, containers: [] }, status: { phase: 'Running', podIP: ip },
});
const svc = (namespace: string, name: string): V1Service => ({ metadata: { name, namespace }, spec: { clusterIP: '10.96.0.10', selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });

function model(): MeshModel {
  return new MeshModel({ trustDomain: 'cluster.local', rootNamespace: 'ambit-system', certTtlMs: 1000, roots: 'ROOTS' }, { report: () => undefined });
}

describe('per-node config', () => {
  it('a node sees its namespaces and those they reach; changes go only to nodes they concern', () => {
    const m = model();
    m.namespace('add', ns('a', 'a'));
    m.namespace('add', ns('b', 'b'));
    m.pod('add', pod('a', 'web', 'node-1', '10.1.0.1'));
    m.pod('add', pod('b', 'db', 'node-2', '10.1.0.2'));
    m.service('add', svc('a', 'web'));
    m.service('add', svc('b', 'db'));
    expect(m.scopeOf('node-1')).toEqual(new Set(['a']));
    const s1 = new NodeSession('node-1', undefined as never, {});
    s1.scope = m.scopeOf('node-1');
    const first = s1.diff(m.table, 'v1')!;
    expect(first.resources.map((r) => `${r.type}/${r.name}`).sort()).toEqual(['mesh/mesh', 'service/web.a', 'workload/web.a']);
    expect(JSON.parse(first.resources.find((r) => r.type === 'workload')!.body.toString())).toMatchObject({ name: 'web', namespace: 'a', node: 'node-1', address: '10.1.0.1', podUid: '7c1e0000-0000-4000-8000-000000000001' });
    m.table.takeChanges();
    // A change in namespace b is nothing to node-1.
    m.pod('update', pod('b', 'db', 'node-2', '10.1.0.2', { app: 'db', v: '2' }));
    expect(s1.diff(m.table, 'v2', m.table.takeChanges())).toBeUndefined();
    // Opting a pod out drops its podUid (capture), not the workload.
    m.pod('update', { ...pod('a', 'web', 'node-1', '10.1.0.1'), metadata: { ...pod('a', 'web', 'node-1', '10.1.0.1').metadata, labels: { app: 'web', 'ambit.dev/mesh': 'disabled' } } });
    const upd = s1.diff(m.table, 'v3', m.table.takeChanges())!;
    expect(upd.resources.map((r) => r.name)).toEqual(['web.a']);
    expect(JSON.parse(upd.resources[0]!.body.toString()).podUid).toBeUndefined();
    // The pod goes: its workload is removed from node-1.
    m.pod('delete', pod('a', 'web', 'node-1', '10.1.0.1'));
    const gone = s1.diff(m.table, 'v4', m.table.takeChanges())!;
    expect(gone.removed).toEqual([{ type: 'workload', name: 'web.a' }]);
    expect(m.takeDirtyNodes()).toEqual(new Set(['node-1', 'node-2']));
  });

  it('a node gets the entries of nodes running workloads it may reach, and learns of new ones', () => {
    const m = model();
    m.namespace('add', ns('a', 'a'));
    m.namespace('add', ns('b', 'b'));
    for (const n of ['node-1', 'node-2', 'node-3']) m.node('add', { metadata: { name: n }, status: { addresses: [{ type: 'InternalIP', address: `192.168.0.${n.slice(-1)}` }] } });
    m.pod('add', pod('a', 'web', 'node-1', '10.1.0.1'));
    m.pod('add', pod('a', 'api', 'node-2', '10.1.0.2'));
    m.pod('add', pod('b', 'db', 'node-3', '10.1.0.3'));
    const s = new NodeSession('node-1', undefined as never, {}, (o, sc) => m.nodeConcerns(o, sc));
    s.scope = m.scopeOf('node-1');
    const nodesOf = (r: { resources: { type: string; name: string }[] }) => r.resources.filter((x) => x.type === 'node').map((x) => x.name).sort();
    expect(nodesOf(s.diff(m.table, 'v1')!)).toEqual(['node-1', 'node-2']);
    m.table.takeChanges();
    // A pod of namespace a lands on node-3: node-3's entry now concerns node-1.
    m.pod('add', pod('a', 'batch', 'node-3', '10.1.0.4'));
    expect(nodesOf(s.diff(m.table, 'v2', m.table.takeChanges())!)).toEqual(['node-3']);
  });

  it('a node reconnecting with what it holds gets only the difference', () => {
    const m = model();
    m.namespace('add', ns('a'));
    m.pod('add', pod('a', 'web', 'node-1', '10.1.0.1'));
    const s = new NodeSession('node-1', undefined as never, {});
    s.scope = m.scopeOf('node-1');
    const all = s.diff(m.table, 'v1')!;
    const held = Object.fromEntries(all.resources.map((r) => [`${r.type}/${r.name}`, r.version]));
    m.service('add', svc('a', 'web'));
    const again = new NodeSession('node-1', undefined as never, held);
    again.scope = m.scopeOf('node-1');
    expect(again.diff(m.table, 'v2')!.resources.map((r) => `${r.type}/${r.name}`)).toEqual(['service/web.a']);
  });

  it('AuthorizationPolicies become one authz binding per selected workload, root-namespace ones everywhere', () => {
    const m = model();
    m.namespace('add', ns('a'));
    m.pod('add', pod('a', 'web', 'node-1', '10.1.0.1'));
    m.pod('add', pod('a', 'api', 'node-1', '10.1.0.2'));
    m.authorizationPolicy('add', { metadata: { name: 'only-api', namespace: 'a' }, spec: { selector: { matchLabels: { app: 'api' } }, rules: [{}] } });
    m.authorizationPolicy('add', { metadata: { name: 'mesh-deny', namespace: 'ambit-system' }, spec: { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/debug'] } }] }] } });
    const api = m.table.get('binding/authz/a/api')!.body as { target: object; filters: { config: { policies: { name: string }[] } }[] };
    expect(api.target).toEqual({ workload: 'api.a' });
    expect(api.filters[0]!.config.policies.map((p) => p.name)).toEqual(['a.only-api', 'ambit-system.mesh-deny']);
    const web = m.table.get('binding/authz/a/web')!.body as { filters: { config: { policies: { name: string }[] } }[] };
    expect(web.filters[0]!.config.policies.map((p) => p.name)).toEqual(['ambit-system.mesh-deny']);
  });
});
