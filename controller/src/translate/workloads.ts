/** Pods → mesh workloads; Nodes → mesh nodes. */
import type { V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import type { NodeConfig, WorkloadConfig } from '@ambit/runtime';
import { HBONE_ADDRESS_ANNOTATION, HBONE_PORT_ANNOTATION, isDnsLabel, isEnrolled } from './labels.js';

/**
 * The workload a pod is, or undefined when it is none: no IP yet, finished, on the host
 * network (it has the node's address), or a name the mesh cannot carry. Every pod is a
 * workload (a destination the mesh knows); only enrolled ones carry `podUid`, which puts
 * them in capture.
 */
export function workloadOf(pod: V1Pod, ns: V1Namespace | undefined): WorkloadConfig | undefined {
  const ip = pod.status?.podIP;
  const phase = pod.status?.phase;
  const name = pod.metadata?.name;
  const namespace = pod.metadata?.namespace;
  if (!ip || !pod.spec?.nodeName || pod.spec.hostNetwork || phase === 'Succeeded' || phase === 'Failed' || pod.metadata?.deletionTimestamp) return undefined;
  if (!isDnsLabel(name) || !isDnsLabel(namespace)) return undefined;
  const w: WorkloadConfig = {
    name,
    namespace,
    serviceAccount: pod.spec.serviceAccountName ?? 'default',
    address: ip,
    node: pod.spec.nodeName,
    labels: { ...(pod.metadata?.labels ?? {}) },
  };
  const named = namedPortsOf(pod);
  if (named) w.namedPorts = named;
  if (isEnrolled(pod, ns) && pod.metadata?.uid) w.podUid = pod.metadata.uid;
  return w;
}

/** The pod's TCP container ports that have a name (what a Service's named targetPort resolves to); undefined when none. */
export function namedPortsOf(pod: V1Pod): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      if (p.name && (p.protocol === undefined || p.protocol === 'TCP') && !(p.name in out)) out[p.name] = p.containerPort;
    }
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export function nodeOf(node: V1Node): NodeConfig | undefined {
  const name = node.metadata?.name;
  if (!name) return undefined;
  const annotations = node.metadata?.annotations ?? {};
  const addresses = node.status?.addresses ?? [];
  const address = annotations[HBONE_ADDRESS_ANNOTATION]
    ?? addresses.find((a) => a.type === 'InternalIP')?.address
    ?? addresses.find((a) => a.type === 'ExternalIP')?.address;
  if (!address) return undefined;
  const port = Number(annotations[HBONE_PORT_ANNOTATION] ?? 15008);
  return { name, address, hbonePort: Number.isInteger(port) && port > 0 && port < 65536 ? port : 15008 };
}
