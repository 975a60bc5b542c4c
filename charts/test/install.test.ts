// The chart against a real kube-apiserver (1.34, built from the Go module proxy): what it renders
// passes the server's own validation, `helm install` and `helm upgrade` succeed, the CRDs become
// Established, and RBAC lets the controller's ServiceAccount do what the controller does and no
// more (`kubectl auth can-i --as`). No kubelet runs: Deployment and DaemonSet make no pods here.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ApiServer, kubeBinaries } from './support/apiserver.js';
import { AUTHORIZATION_POLICY_CRD, HTTP_ROUTE_CRD } from './support/crds.js';
import { CHART, helmTools, one, run, template, type K8sObject, type Tools } from './support/helm.js';

const NS = 'ambit-system';
const bins = kubeBinaries();
const skip = 'skip' in bins ? bins.skip : undefined;

describe.skipIf(skip !== undefined)(`chart on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let api: ApiServer;
  let tools: Tools;
  const env = () => ({ ...process.env, KUBECONFIG: api.kubeconfig, HELM_CACHE_HOME: path.join(api.dir, 'helm-cache'), HELM_CONFIG_HOME: path.join(api.dir, 'helm-config'), HELM_DATA_HOME: path.join(api.dir, 'helm-data') });
  const kubectl = (...args: string[]) => run(tools.kubectl, args, env());
  const helm = (...args: string[]) => run(tools.helm, args, env());
  const must = async (p: Promise<{ code: number; stdout: string; stderr: string }>) => {
    const r = await p;
    if (r.code !== 0) throw new Error(r.stderr || r.stdout);
    return r.stdout;
  };

  beforeAll(async () => {
    tools = helmTools();
    api = await ApiServer.start((bins as { dir: string }).dir, tools.kubectl);
    await must(kubectl('create', 'namespace', NS));
  }, 120_000);

  afterAll(async () => {
    await api?.stop();
  });

  // Each optional piece of the chart on, so that every template is checked by the server.
  const variants: Array<[string, Record<string, unknown>]> = [
    ['defaults', {}],
    ['HA controller, minAvailable PDB, digests, pull secrets', { controller: { replicas: 3, podDisruptionBudget: { enabled: true, minAvailable: 2 }, image: { digest: `sha256:${'b'.repeat(64)}` } }, global: { imagePullSecrets: [{ name: 'regcred' }] }, nodeProxy: { image: { digest: `sha256:${'c'.repeat(64)}` } } }],
    ['exposed admin, ServiceMonitors, no PDB, extra args and env, hybrid cgroup host', { serviceMonitor: { enabled: true, interval: '30s' }, nodeProxy: { admin: { exposed: true }, extraArgs: ['--log-level=debug'], extraEnv: [{ name: 'X', value: 'y' }], hostPaths: { cgroup2: '/sys/fs/cgroup/unified' } }, controller: { podDisruptionBudget: { enabled: false }, extraEnv: [{ name: 'Y', value: 'z' }] } }],
  ];

  it.each(variants)('what the chart renders passes the API server\'s validation, strict about fields (%s)', async (_name, values) => {
    const { objects } = await template(values);
    // ServiceMonitor is the Prometheus Operator's kind, not Kubernetes': its CRD is not installed here.
    const k8s = objects.filter((o) => o.kind !== 'ServiceMonitor');
    const file = path.join(api.dir, 'rendered.yaml');
    // JSON documents: kubectl reads YAML 1.1, where an unquoted y or no would turn into a boolean.
    writeFileSync(file, k8s.map((o) => JSON.stringify(o)).join('\n---\n'));
    const r = await kubectl('create', '--dry-run=server', '--validate=strict', '-f', file, '-o', 'name');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(k8s.length);
    if (values['serviceMonitor']) expect(objects.length - k8s.length).toBe(2);
  });

  it('refuses what the server would refuse: a field no Kubernetes version has is an error, not dropped', async () => {
    const { objects } = await template();
    const ds = one(objects, 'DaemonSet') as K8sObject & { spec: { template: { spec: Record<string, unknown> } } };
    ds.spec.template.spec['hostNetworking'] = true;
    const file = path.join(api.dir, 'bad.yaml');
    writeFileSync(file, JSON.stringify(ds));
    const r = await kubectl('create', '--dry-run=server', '--validate=strict', '-f', file);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown field "spec.template.spec.hostNetworking"/);
  });

  it('helm install creates everything, and the CRDs become Established', async () => {
    const out = await must(helm('install', 'ambit', CHART, '--namespace', NS, '--wait=false'));
    expect(out).toMatch(/STATUS: deployed/);
    expect(out).toMatch(/kubectl wait --for=condition=Established crd\/filterbindings\.ambit\.dev/);  // NOTES.txt
    await must(kubectl('wait', '--for=condition=Established', '--timeout=30s', 'crd/filterbindings.ambit.dev'));
    const names = (await must(kubectl('get', '-n', NS, 'daemonset,deployment,service,poddisruptionbudget,serviceaccount,configmap,role,rolebinding', '-l', 'app.kubernetes.io/instance=ambit', '-o', 'name'))).trim().split('\n').sort();
    expect(names).toEqual([
      'configmap/ambit-node', 'daemonset.apps/ambit-node', 'deployment.apps/ambit-controller',
      'poddisruptionbudget.policy/ambit-controller', 'role.rbac.authorization.k8s.io/ambit-controller',
      'rolebinding.rbac.authorization.k8s.io/ambit-controller', 'service/ambit-controller',
      'serviceaccount/ambit-controller', 'serviceaccount/ambit-node',
    ]);
    // A FilterBinding is accepted by the installed CRD.
    await must(kubectl('get', 'filterbindings', '-A'));
  });

  it('RBAC lets the controller\'s ServiceAccount do what the controller does, and no more', async () => {
    // Stand-ins for Istio's and Gateway API's CRDs (installed by those projects), so that can-i resolves
    // their resources: without them every answer about them would be "no", whatever the RBAC says.
    const crdFile = path.join(api.dir, 'stand-in-crds.json');
    writeFileSync(crdFile, [AUTHORIZATION_POLICY_CRD, HTTP_ROUTE_CRD].map((o) => JSON.stringify(o)).join('\n---\n'));
    await must(kubectl('create', '-f', crdFile));
    await must(kubectl('wait', '--for=condition=Established', '--timeout=30s', 'crd/authorizationpolicies.security.istio.io', 'crd/httproutes.gateway.networking.k8s.io'));
    const as = `system:serviceaccount:${NS}:ambit-controller`;
    // An answer about a resource the server does not serve says nothing about the RBAC.
    const unknownType = (stderr: string) => /doesn't have a resource type/.test(stderr);
    const allowed: string[][] = [
      ['list', 'pods', '-A'], ['watch', 'pods', '-A'], ['get', 'pods', '-n', 'shop'], ['list', 'namespaces'], ['watch', 'services', '-A'], ['list', 'nodes'],
      ['list', 'filterbindings.ambit.dev', '-A'], ['patch', 'filterbindings.ambit.dev/x', '--subresource=status', '-n', 'shop'],
      ['update', 'filterbindings.ambit.dev/x', '--subresource=status', '-n', 'shop'],
      ['watch', 'authorizationpolicies.security.istio.io', '-A'], ['list', 'httproutes.gateway.networking.k8s.io', '-A'],
      ['create', 'tokenreviews.authentication.k8s.io'], ['create', 'events', '-n', 'shop'],
      ['create', 'secrets', '-n', NS], ['get', 'secret/ambit-ca', '-n', NS],
      ['create', 'configmaps', '-n', NS], ['update', 'configmap/ambit-ca-root', '-n', NS], ['get', 'configmap/ambit-ca-root', '-n', NS],
      // Leader election.
      ['create', 'leases.coordination.k8s.io', '-n', NS], ['get', 'lease.coordination.k8s.io/ambit-controller', '-n', NS],
      ['update', 'lease.coordination.k8s.io/ambit-controller', '-n', NS],
    ];
    const denied: string[][] = [
      // No other Secret, anywhere; no listing of Secrets even in its namespace.
      ['get', 'secret/other', '-n', NS], ['list', 'secrets', '-n', NS], ['get', 'secrets', '-n', 'shop'], ['delete', 'secret/ambit-ca', '-n', NS],
      ['update', 'secret/ambit-ca', '-n', NS],
      // Reads only, on what it models.
      ['create', 'pods', '-n', 'shop'], ['delete', 'pods', '-n', 'shop'], ['patch', 'pods', '-n', 'shop'], ['update', 'services', '-n', 'shop'],
      ['patch', 'nodes'], ['delete', 'namespaces'],
      ['update', 'filterbindings.ambit.dev/x', '-n', 'shop'], ['delete', 'filterbindings.ambit.dev', '-n', 'shop'], ['create', 'filterbindings.ambit.dev', '-n', 'shop'],
      ['update', 'authorizationpolicies.security.istio.io', '-n', 'shop'], ['patch', 'httproutes.gateway.networking.k8s.io', '-n', 'shop'],
      // The CA's ConfigMap only, in its own namespace.
      ['update', 'configmap/other', '-n', NS], ['update', 'configmap/ambit-ca-root', '-n', 'shop'],
      ['create', 'serviceaccounts/token', '-n', NS], ['create', 'clusterrolebindings'], ['escalate', 'clusterroles'], ['impersonate', 'users'],
      ['list', 'customresourcedefinitions'],
      // Its own Lease only, in its own namespace.
      ['update', 'lease.coordination.k8s.io/other', '-n', NS], ['delete', 'lease.coordination.k8s.io/ambit-controller', '-n', NS],
      ['update', 'lease.coordination.k8s.io/ambit-controller', '-n', 'kube-system'],
    ];
    const wrongAllowed = [];
    for (const a of allowed) { const r = await kubectl('auth', 'can-i', '--as', as, ...a); if (r.stdout.trim() !== 'yes' || unknownType(r.stderr)) wrongAllowed.push(`${a.join(' ')}: ${r.stdout.trim()} ${r.stderr.trim()}`); }
    const wrongDenied = [];
    for (const d of denied) { const r = await kubectl('auth', 'can-i', '--as', as, ...d); if (r.stdout.trim() !== 'no' || unknownType(r.stderr)) wrongDenied.push(`${d.join(' ')}: ${r.stdout.trim()} ${r.stderr.trim()}`); }
    expect({ refused: wrongAllowed, permitted: wrongDenied }).toEqual({ refused: [], permitted: [] });
    // The node proxies' ServiceAccount can do nothing with the API at all.
    const list = await kubectl('auth', 'can-i', '--list', '--as', `system:serviceaccount:${NS}:ambit-node`, '-n', NS);
    const rules = list.stdout.trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]);
    expect(rules.length).toBeGreaterThan(0);
    // Only what every authenticated identity may do (self reviews, discovery).
    expect(rules.filter((r) => !/^(selfsubject|\[\/)/.test(r!))).toEqual([]);
  });

  it('helm upgrade changes the workloads in place and keeps the CRDs', async () => {
    const out = await must(helm('upgrade', 'ambit', CHART, '--namespace', NS, '--set', 'controller.replicas=2', '--set', 'nodeProxy.logLevel=debug', '--wait=false'));
    expect(out).toMatch(/REVISION: 2/);
    const ds = JSON.parse(await must(kubectl('get', '-n', NS, 'daemonset/ambit-node', '-o', 'json'))) as { spec: { template: { spec: { containers: Array<{ args: string[] }> } } } };
    expect(ds.spec.template.spec.containers[0]!.args).toContain('--log-level=debug');
    expect((await must(kubectl('get', '-n', NS, 'deployment/ambit-controller', '-o', 'jsonpath={.spec.replicas}'))).trim()).toBe('2');
    await must(kubectl('wait', '--for=condition=Established', '--timeout=10s', 'crd/filterbindings.ambit.dev'));
  });

  it('helm uninstall removes the release\'s objects and leaves the CRDs (deleted only when asked)', async () => {
    await must(helm('uninstall', 'ambit', '--namespace', NS, '--wait'));
    const left = (await must(kubectl('get', '-n', NS, 'all,configmap,serviceaccount,role,rolebinding,pdb', '-l', 'app.kubernetes.io/instance=ambit', '-o', 'name'))).trim();
    expect(left).toBe('');
    expect((await must(kubectl('get', 'clusterrole,clusterrolebinding', '-l', 'app.kubernetes.io/instance=ambit', '-o', 'name'))).trim()).toBe('');
    await must(kubectl('get', 'crd/filterbindings.ambit.dev'));
    // The CRDs come from crds/: what `helm show crds` prints is what was installed.
    const shown = parseAllDocuments(await must(helm('show', 'crds', CHART))).map((d) => (d.toJS() as K8sObject | null)?.metadata.name).filter(Boolean);
    expect(shown).toEqual(['filterbindings.ambit.dev']);
  });
});
