/**
 * HTTPRoute status for its Service parents, as Gateway API controllers write it: one
 * `status.parents[]` entry per parentRef this controller handles (`controllerName:
 * ambit.dev/controller`), with an `Accepted` condition saying whether the route is applied
 * and, when not, why. Entries of other controllers are kept; the write is a merge patch
 * guarded by the route's resourceVersion (a conflict is retried on the next event).
 */
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import { errorMessage, statusCode } from './errors.js';
import type { HttpRoute, MappedRoute } from './translate/httproute.js';

export const CONTROLLER_NAME = 'ambit.dev/controller';

interface ParentStatus {
  parentRef: { group?: string; kind?: string; name: string; namespace?: string; port?: number };
  controllerName: string;
  conditions: { type: string; status: string; reason: string; message: string; observedGeneration?: number; lastTransitionTime: string }[];
}

export async function writeRouteStatus(custom: CustomObjectsApi, route: HttpRoute & { metadata: { resourceVersion?: string }; status?: { parents?: ParentStatus[] } }, mapped: MappedRoute): Promise<boolean> {
  const ns = route.metadata.namespace;
  const serviceParents = (route.spec?.parentRefs ?? []).filter((p) => (p.group ?? '') === '' && (p.kind ?? 'Service') === 'Service');
  if (serviceParents.length === 0) return false;
  const old = route.status?.parents ?? [];
  const now = new Date().toISOString();
  const ours: ParentStatus[] = serviceParents.map((p) => {
    const accepted = mapped.parents.some((m) => m.service === p.name) && (p.namespace ?? ns) === ns;
    const c = accepted
      ? { type: 'Accepted', status: 'True', reason: 'Accepted', message: ['applied: its rules route the Service\'s outbound traffic (traffic-split)', ...mapped.problems].join('\n') }
      : { type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: mapped.problems.join('\n') || 'not supported' };
    const prev = old.find((o) => o.controllerName === CONTROLLER_NAME && o.parentRef.name === p.name)?.conditions.find((x) => x.type === 'Accepted');
    return {
      parentRef: { group: '', kind: 'Service', name: p.name, ...(p.port !== undefined ? { port: p.port } : {}) },
      controllerName: CONTROLLER_NAME,
      conditions: [{ ...c, ...(route.metadata.generation !== undefined ? { observedGeneration: route.metadata.generation } : {}), lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now }],
    };
  });
  const same = ours.every((o) => {
    const prev = old.find((x) => x.controllerName === CONTROLLER_NAME && x.parentRef.name === o.parentRef.name)?.conditions[0];
    const c = o.conditions[0]!;
    return prev && prev.status === c.status && prev.reason === c.reason && prev.message === c.message && prev.observedGeneration === c.observedGeneration;
  }) && old.filter((x) => x.controllerName === CONTROLLER_NAME).length === ours.length;
  if (same) return false;
  const parents = [...old.filter((x) => x.controllerName !== CONTROLLER_NAME), ...ours];
  try {
    await custom.patchNamespacedCustomObjectStatus({
      group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', namespace: ns, name: route.metadata.name,
      body: { metadata: { resourceVersion: route.metadata.resourceVersion }, status: { parents } },
    }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    return true;
  } catch (e) {
    if (statusCode(e) === 404 || statusCode(e) === 409) return false;
    throw new Error(`writing the status of HTTPRoute ${ns}/${route.metadata.name}: ${errorMessage(e)}`, { cause: e });
  }
}
