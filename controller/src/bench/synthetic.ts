/**
 * A synthetic cluster for the scale benchmark: `namespaces` namespaces, each with
 * `servicesPerNamespace` services and `podsPerNamespace` pods, all of namespace k's pods on
 * node k (so each node's workloads concern one namespace), every namespace annotated to reach
 * only itself. Fed straight into the mesh model, as informers would.
 */
import type { V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import { MESH_LABEL, REACHES_ANNOTATION } from '../translate/labels.js';
import type { MeshModel } from '../model/mesh.js';

export interface Shape {
  namespaces: number;
  servicesPerNamespace: number;
  podsPerNamespace: number;
}

export const nsName = (k: number) => `ns-${k}`;
export const nodeName = (k: number) => `node-${k}`;

const ip = (n: number) => `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;

export function syntheticPod(shape: Shape, k: number, i: number, version = 'v1'): V1Pod {
  const svc = i % shape.servicesPerNamespace;
  return {
    metadata: { name: `pod-${i}`, namespace: nsName(k), uid: `00000000-0000-4000-8000-${(k * 100_000 + i).toString(16).padStart(12, '0')}`, labels: { app: `svc-${svc}`, version } },
    spec: { nodeName: nodeName(k), serviceAccountName: `sa-${svc}`, containers: [] },
    status: { phase: 'Running', podIP: ip(k * shape.podsPerNamespace + i + 1) },
  };
}

export function syntheticNode(k: number, port = 15008): V1Node {
  return { metadata: { name: nodeName(k), annotations: { 'ambit.dev/hbone-port': String(port) } }, status: { addresses: [{ type: 'InternalIP', address: `172.16.${k >> 8}.${k & 255}` }] } };
}

export function populate(model: MeshModel, shape: Shape, nodes: number): void {
  for (let k = 0; k < nodes; k++) model.node('add', syntheticNode(k));
  for (let k = 0; k < shape.namespaces; k++) {
    const ns: V1Namespace = { metadata: { name: nsName(k), labels: { [MESH_LABEL]: 'enabled' }, annotations: { [REACHES_ANNOTATION]: nsName(k) } } };
    model.namespace('add', ns);
    for (let s = 0; s < shape.servicesPerNamespace; s++) {
      const svc: V1Service = {
        metadata: { name: `svc-${s}`, namespace: nsName(k) },
        spec: { clusterIP: `100.${64 + (k >> 8)}.${k & 255}.${s + 1}`, selector: { app: `svc-${s}` }, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
      };
      model.service('add', svc);
    }
    for (let i = 0; i < shape.podsPerNamespace; i++) model.pod('add', syntheticPod(shape, k, i));
  }
}
