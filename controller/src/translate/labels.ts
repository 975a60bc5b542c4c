/**
 * Enrollment labels (like Istio ambient's `istio.io/dataplane-mode`) and the annotations
 * the controller reads.
 */
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';

/** On a Namespace or Pod: `enabled` puts pods in the mesh; on a Pod, `disabled` opts it out. */
export const MESH_LABEL = 'ambit.dev/mesh';
/** On a Namespace: the other namespaces its workloads reach (comma-separated; `*` or absent: every namespace). */
export const REACHES_ANNOTATION = 'ambit.dev/reaches';
/** On a Node: the address and port of its node proxy's HBONE listener (default: InternalIP, 15008). */
export const HBONE_ADDRESS_ANNOTATION = 'ambit.dev/hbone-address';
export const HBONE_PORT_ANNOTATION = 'ambit.dev/hbone-port';

export function isEnrolled(pod: V1Pod, ns: V1Namespace | undefined): boolean {
  const own = pod.metadata?.labels?.[MESH_LABEL];
  if (own === 'disabled') return false;
  if (own === 'enabled') return true;
  return ns?.metadata?.labels?.[MESH_LABEL] === 'enabled';
}

/** The namespaces a namespace's workloads reach: '*' for all. */
export function reaches(ns: V1Namespace | undefined): Set<string> | '*' {
  const v = ns?.metadata?.annotations?.[REACHES_ANNOTATION]?.trim();
  if (v === undefined || v === '' || v === '*') return '*';
  return new Set(v.split(',').map((s) => s.trim()).filter(Boolean));
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export function isDnsLabel(s: string | undefined): s is string {
  return s !== undefined && s.length <= 63 && DNS_LABEL.test(s);
}

export function selectorMatches(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector) return false;
  const entries = Object.entries(selector);
  if (entries.length === 0) return false;
  return entries.every(([k, v]) => labels?.[k] === v);
}
