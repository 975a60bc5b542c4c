/** Kubernetes objects the tests create, and a kubelet's status patch. */
import type { TestCluster } from './cluster.js';

export const namespace = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });

export const node = (name: string, hbonePort: number) => ({
  apiVersion: 'v1', kind: 'Node',
  metadata: { name, annotations: { 'ambit.dev/hbone-address': '127.0.0.1', 'ambit.dev/hbone-port': String(hbonePort) } },
});

export const pod = (ns: string, name: string, o: { node: string; serviceAccount?: string; labels?: Record<string, string>; ports?: { name: string; containerPort: number }[] }) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace: ns, labels: o.labels ?? {} },
  spec: { nodeName: o.node, serviceAccountName: o.serviceAccount ?? 'default', containers: [{ name: 'app', image: 'example.invalid/app:1', ...(o.ports ? { ports: o.ports } : {}) }] },
});

export const service = (ns: string, name: string, o: { selector: Record<string, string>; port: number; targetPort: number | string; appProtocol?: string }) => ({
  apiVersion: 'v1', kind: 'Service',
  metadata: { name, namespace: ns },
  spec: { selector: o.selector, ports: [{ name: 'http', port: o.port, targetPort: o.targetPort, protocol: 'TCP', ...(o.appProtocol ? { appProtocol: o.appProtocol } : {}) }] },
});

/** What a kubelet reports once the pod runs: phase Running and its IP. */
export async function markRunning(cluster: TestCluster, ns: string, name: string, ip: string): Promise<void> {
  await cluster.kubectl(['-n', ns, 'patch', 'pod', name, '--subresource=status', '--type=merge', '-p',
    JSON.stringify({ status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } })]);
}
