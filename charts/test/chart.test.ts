// The Helm chart: lint, its values schema (covering every value, refusing unknown ones), and what it
// renders — the node proxy's privileges, mounts and update strategy, the controller's wiring and RBAC.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CHART, REPO, helmTools, one, run, template, type K8sObject } from './support/helm.js';

interface Container {
  name: string; image: string; args?: string[]; command?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  securityContext?: { privileged?: boolean; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; capabilities?: { add?: string[]; drop?: string[] } };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean; mountPropagation?: string }>;
  readinessProbe?: { httpGet?: { host?: string; path: string; port: number | string } };
}
interface PodSpec {
  hostNetwork?: boolean; hostPID?: boolean; serviceAccountName: string; priorityClassName?: string;
  automountServiceAccountToken?: boolean;
  tolerations?: Array<Record<string, string>>; containers: Container[]; initContainers?: Container[];
  volumes: Array<{ name: string; hostPath?: { path: string; type?: string }; configMap?: { name: string }; emptyDir?: object }>;
}
const podSpec = (o: K8sObject): PodSpec => (o['spec'] as { template: { spec: PodSpec } }).template.spec;
const spec = <T>(o: K8sObject): T => o['spec'] as T;

const valuesText = readFileSync(path.join(CHART, 'values.yaml'), 'utf8');
const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as JsonSchema;
interface JsonSchema { type?: string | string[]; properties?: Record<string, JsonSchema>; additionalProperties?: boolean | JsonSchema; description?: string; items?: JsonSchema }

describe('chart: lint and values schema', () => {
  it('helm lint --strict is clean (no errors, warnings or notes)', async () => {
    const r = await run(helmTools().helm, ['lint', '--strict', CHART]);
    expect(r.stderr + r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.stdout).not.toMatch(/\[(ERROR|WARNING|INFO)\]/);
    expect(r.code).toBe(0);
  });

  it('values.schema.json describes every value of values.yaml, and every object it describes is closed', () => {
    const missing: string[] = [];
    const walk = (value: unknown, s: JsonSchema | undefined, at: string): void => {
      if (!s) { missing.push(at); return; }
      if (!s.description && at !== '') missing.push(`${at} (no description)`);
      if (value && typeof value === 'object' && !Array.isArray(value) && s.properties) {
        for (const [k, v] of Object.entries(value)) walk(v, s.properties[k], `${at}/${k}`);
      }
    };
    walk(parse(valuesText), schema, '');
    expect(missing).toEqual([]);
    // Objects with named properties refuse others (a typo in a value is an error, not ignored).
    const open: string[] = [];
    const closed = (s: JsonSchema, at: string): void => {
      if (s.properties) {
        if (s.additionalProperties !== false) open.push(at);
        for (const [k, v] of Object.entries(s.properties)) closed(v, `${at}/${k}`);
      }
    };
    closed(schema, '');
    expect(open).toEqual([]);
  });

  const controllerCli = path.join(REPO, 'controller/dist/cli.js');
  it.skipIf(!existsSync(controllerCli))(`crds/ holds exactly the CRDs the controller generates${existsSync(controllerCli) ? '' : ' (skipped: the controller is not built here)'}`, async () => {
    const r = await run(process.execPath, [path.join(REPO, 'charts/sync-crds.mjs'), '--check']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('refuses unknown and ill-typed values with the path at fault', async () => {
    await expect(template({ nodeProxy: { capture: { mode: 'iptables' } } })).rejects.toThrow(/\/nodeProxy\/capture\/mode/);
    await expect(template({ controller: { replica: 2 } })).rejects.toThrow(/\/controller.*replica/);
    await expect(template({ nodeProxy: { capabilities: ['ALL'] } })).rejects.toThrow(/\/nodeProxy\/capabilities\/0/);
    await expect(template({ controller: { grpcPort: 70000 } })).rejects.toThrow(/\/controller\/grpcPort/);
    await expect(template({ nodeProxy: { hostPaths: { bpffs: 'sys/fs/bpf' } } })).rejects.toThrow(/\/nodeProxy\/hostPaths\/bpffs/);
    await expect(template({ nodeProxy: { updateStrategy: { maxUnavailable: 0 } } })).rejects.toThrow(/\/nodeProxy\/updateStrategy\/maxUnavailable/);
  });
});

describe('chart: the node proxy DaemonSet', () => {
  it('runs on the host network with exactly BPF, NET_ADMIN and PERFMON, never privileged', async () => {
    const { objects } = await template();
    const ds = one(objects, 'DaemonSet');
    const pod = podSpec(ds);
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBeUndefined();
    const [proxy] = pod.containers;
    expect(pod.containers).toHaveLength(1);
    expect(proxy!.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    expect(proxy!.securityContext!.capabilities).toEqual({ drop: ['ALL'], add: ['BPF', 'NET_ADMIN', 'PERFMON'] });
    // The init container writing the base config needs no capability at all.
    expect(pod.initContainers!.map((c) => c.securityContext!.capabilities)).toEqual([{ drop: ['ALL'] }]);
    expect(objects.filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment').flatMap((o) => podSpec(o).containers).every((c) => c.securityContext?.privileged !== true)).toBe(true);
  });

  it('mounts bpffs, the cgroup2 hierarchy and a state directory from the host', async () => {
    const pod = podSpec(one((await template()).objects, 'DaemonSet'));
    const host = Object.fromEntries(pod.volumes.filter((v) => v.hostPath).map((v) => [v.name, v.hostPath]));
    expect(host).toEqual({
      bpffs: { path: '/sys/fs/bpf', type: 'Directory' },
      cgroup2: { path: '/sys/fs/cgroup', type: 'Directory' },
      state: { path: '/var/lib/ambit', type: 'DirectoryOrCreate' },
    });
    const mounts = Object.fromEntries(pod.containers[0]!.volumeMounts!.map((m) => [m.name, m]));
    expect(mounts['bpffs']).toMatchObject({ mountPath: '/sys/fs/bpf', mountPropagation: 'HostToContainer' });
    expect(mounts['cgroup2']).toMatchObject({ mountPath: '/sys/fs/cgroup', readOnly: true });
    expect(mounts['state']).toMatchObject({ mountPath: '/var/lib/ambit' });
    // Hybrid hosts keep cgroup2 elsewhere: the source moves, the container path stays.
    const hybrid = podSpec(one((await template({ nodeProxy: { hostPaths: { cgroup2: '/sys/fs/cgroup/unified' } } })).objects, 'DaemonSet'));
    expect(hybrid.volumes.find((v) => v.name === 'cgroup2')!.hostPath!.path).toBe('/sys/fs/cgroup/unified');
  });

  it('tolerates every taint, is node-critical, and rolls one node at a time without surge', async () => {
    const ds = one((await template()).objects, 'DaemonSet');
    const pod = podSpec(ds);
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(spec<{ updateStrategy: unknown }>(ds).updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
  });

  it('joins the controller by its Service name with the controller CA, its node name and its pod UID', async () => {
    const { objects } = await template({}, [], 'mesh', 'ambit-system');
    const proxy = podSpec(one(objects, 'DaemonSet')).containers[0]!;
    expect(proxy.args).toEqual(expect.arrayContaining([
      'run', '--config=/run/ambit/node.yaml', '--controller=mesh-ambit-controller.ambit-system.svc:15012',
      '--controller-ca=/etc/ambit/controller-ca/root-cert.pem', '--controller-server-name=mesh-ambit-controller.ambit-system.svc',
      '--node-name=$(NODE_NAME)',
    ]));
    const env = Object.fromEntries(proxy.env!.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath ?? e.value]));
    expect(env).toMatchObject({ NODE_NAME: 'spec.nodeName', AMBIT_POD_UID: 'metadata.uid' });
    // The controller is told which ServiceAccount the node proxies' tokens belong to.
    const ctl = podSpec(one(objects, 'Deployment')).containers[0]!;
    expect(ctl.args).toContain('--node-service-account=ambit-system:mesh-ambit-node');
    expect(ctl.args).toContain('--server-name=mesh-ambit-controller.ambit-system.svc');
    expect(one(objects, 'ServiceAccount', 'mesh-ambit-node')).toBeDefined();
  });

  it('renders a base config the node proxy accepts, with the node address filled in by the init container', async () => {
    const { objects } = await template({ nodeProxy: { capture: { mode: 'ebpf' }, ports: { outbound: 15101 } } });
    const cm = one(objects, 'ConfigMap');
    const base = (cm['data'] as Record<string, string>)['node.yaml.in']!;
    const filled = parse(base.replaceAll('@HOST_IP@', '10.0.0.7')) as { proxy: { outbound: { address: string; port: number } }; capture: Record<string, unknown> };
    expect(filled.proxy.outbound).toEqual({ address: '10.0.0.7', port: 15101 });
    expect(filled.capture).toMatchObject({ mode: 'ebpf', redirectAddress: '10.0.0.7', pinDir: 'ambit' });
    const init = podSpec(one(objects, 'DaemonSet')).initContainers![0]!;
    expect(init.command!.join(' ')).toContain('@HOST_IP@');
    expect(init.env).toEqual([{ name: 'HOST_IP', valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } } }]);
    // A changed base config rolls the node proxies.
    const other = await template({ nodeProxy: { capture: { mode: 'nftables' } } });
    const checksum = (o: K8sObject[]) => (one(o, 'DaemonSet')['spec'] as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations['checksum/config'];
    expect(checksum(other.objects)).not.toBe(checksum(objects));
  });
});

describe('chart: the controller', () => {
  it('runs unprivileged as a Deployment behind a Service with a PodDisruptionBudget', async () => {
    const { objects } = await template({ controller: { replicas: 3, podDisruptionBudget: { enabled: true, minAvailable: 2 } } });
    const dep = one(objects, 'Deployment');
    expect(spec<{ replicas: number }>(dep).replicas).toBe(3);
    const c = podSpec(dep).containers[0]!;
    expect(c.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(c.ports).toEqual([{ name: 'grpc', containerPort: 15012, protocol: 'TCP' }, { name: 'monitoring', containerPort: 15014, protocol: 'TCP' }]);
    expect(c.readinessProbe!.httpGet).toEqual({ path: '/ready', port: 'monitoring' });
    expect(spec<{ ports: Array<{ name: string; port: number }> }>(one(objects, 'Service')).ports.map((p) => [p.name, p.port])).toEqual([['grpc', 15012], ['monitoring', 15014]]);
    const pdb = spec<{ minAvailable?: number; maxUnavailable?: number; selector: unknown }>(one(objects, 'PodDisruptionBudget'));
    expect(pdb).toMatchObject({ minAvailable: 2, selector: { matchLabels: { 'app.kubernetes.io/component': 'controller' } } });
    expect(pdb.maxUnavailable).toBeUndefined();
    expect((await template({ controller: { podDisruptionBudget: { enabled: false } } })).objects.some((o) => o.kind === 'PodDisruptionBudget')).toBe(false);
  });

  it('gets only reads cluster-wide, status of its own resources, and the CA objects by name in its namespace', async () => {
    const { objects } = await template();
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const cluster = (one(objects, 'ClusterRole')['rules'] as Rule[]);
    const writes = cluster.filter((r) => r.verbs.some((v) => !['get', 'list', 'watch'].includes(v)));
    expect(writes.map((r) => [r.resources.join(','), r.verbs.join(',')])).toEqual([
      ['filterbindings/status', 'get,update,patch'], ['tokenreviews', 'create'], ['events', 'create,patch'],
    ]);
    expect(cluster.flatMap((r) => r.resources)).not.toContain('secrets');
    expect(cluster.flatMap((r) => r.verbs)).not.toContain('*');
    const ns = (one(objects, 'Role')['rules'] as Rule[]);
    expect(ns).toEqual([
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: ['ambit-ca'], verbs: ['get'] },
      { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['ambit-ca-root'], verbs: ['get', 'update'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['ambit-controller'], verbs: ['get', 'update'] },
    ]);
    // The node proxy has no Role or binding at all.
    const subjects = objects.filter((o) => o.kind.endsWith('Binding')).flatMap((o) => o['subjects'] as Array<{ name: string }>);
    expect(subjects.map((s) => s.name)).toEqual(['ambit-controller', 'ambit-controller']);
  });
});

describe('chart: images, ServiceMonitor, names', () => {
  it('defaults to the images images/build.sh produces, and pins by digest when asked', async () => {
    const build = await run(path.join(CHART, '../../images/build.sh'), ['--print-names']);
    expect(build.code).toBe(0);
    const names = build.stdout.trim().split('\n');
    const { objects } = await template();
    const images = [podSpec(one(objects, 'Deployment')).containers[0]!.image, podSpec(one(objects, 'DaemonSet')).containers[0]!.image];
    expect(images).toEqual(names);
    const digest = `sha256:${'a'.repeat(64)}`;
    const pinned = await template({ global: { imageRegistry: 'registry.example' }, nodeProxy: { image: { digest } } });
    expect(podSpec(one(pinned.objects, 'DaemonSet')).containers[0]!.image).toBe(`registry.example/ambit/node@${digest}`);
  });

  it('renders ServiceMonitors only when enabled, the node proxies\' only with the admin API exposed', async () => {
    expect((await template()).objects.some((o) => o.kind === 'ServiceMonitor')).toBe(false);
    const controllerOnly = await template({ serviceMonitor: { enabled: true, interval: '15s', labels: { release: 'prom' } } });
    const sm = one(controllerOnly.objects, 'ServiceMonitor');
    expect(sm.metadata.labels!['release']).toBe('prom');
    expect(spec<{ endpoints: unknown[] }>(sm).endpoints).toEqual([{ port: 'monitoring', path: '/metrics', interval: '15s' }]);
    const both = await template({ serviceMonitor: { enabled: true }, nodeProxy: { admin: { exposed: true } } });
    expect(both.objects.filter((o) => o.kind === 'ServiceMonitor').map((o) => o.metadata.name)).toEqual(['ambit-controller', 'ambit-node']);
    const base = (one(both.objects, 'ConfigMap')['data'] as Record<string, string>)['node.yaml.in']!;
    expect(parse(base)).toMatchObject({ proxy: { admin: { address: '0.0.0.0', port: 15000 } } });
  });

  it('keeps every name within 63 characters and prefixes with the release name', async () => {
    // Release names may have 53 characters; component suffixes must still fit and stay distinct.
    const { objects } = await template({ serviceMonitor: { enabled: true }, nodeProxy: { admin: { exposed: true } } }, [], 'a-very-long-release-name-that-goes-on-and-on-and-on-x');
    for (const o of objects) expect(o.metadata.name.length, o.metadata.name).toBeLessThanOrEqual(63);
    const keys = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(objects.find((o) => o.kind === 'Deployment')!.metadata.name).toMatch(/^a-very-long-release-name.*-controller$/);
    const short = await template({ fullnameOverride: 'mesh' });
    expect(short.objects.filter((o) => o.kind === 'DaemonSet' || o.kind === 'Deployment').map((o) => o.metadata.name).sort()).toEqual(['mesh-controller', 'mesh-node']);
  });
});
