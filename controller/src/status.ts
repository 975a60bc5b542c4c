/**
 * FilterBinding status: `Accepted` (the controller's own checks: packages, pins, configs
 * against the filters' schemas, the target) and `Applied` (no node proxy rejected it; when
 * one did, which node and why, with the JSON path the node reported). Written through the
 * status subresource, only when a condition changed.
 */
import { PatchStrategy, setHeaderOptions, type CustomObjectsApi } from '@kubernetes/client-node';
import type { Condition, FilterBinding } from './crd/schema.js';
import { GROUP, PLURAL, VERSION } from './crd/schema.js';
import { errorMessage, statusCode } from './errors.js';
import type { FilterCheck } from './translate/filterbinding.js';

export interface DesiredStatus {
  accepted: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;
  applied: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;
}

export function desiredStatus(check: FilterCheck | undefined, targetMissing: string | undefined, rejections: ReadonlyMap<string, string>): DesiredStatus | undefined {
  if (!check) return undefined;
  const accepted = !check.ok
    ? { type: 'Accepted', status: 'False' as const, reason: check.reason, message: check.problems.join('\n') }
    : targetMissing
      ? { type: 'Accepted', status: 'False' as const, reason: 'TargetNotFound', message: targetMissing }
      : { type: 'Accepted', status: 'True' as const, reason: 'Valid', message: 'packages found, pins match, configs valid against the filters\' schemas' };
  const applied = accepted.status !== 'True'
    ? { type: 'Applied', status: 'False' as const, reason: 'NotAccepted', message: 'not sent to node proxies until it is accepted' }
    : rejections.size > 0
      ? { type: 'Applied', status: 'False' as const, reason: 'RejectedByNode', message: [...rejections].sort().map(([node, why]) => `node ${node}: ${why}`).join('\n') }
      : { type: 'Applied', status: 'True' as const, reason: 'NoRejections', message: 'no node proxy rejected it' };
  return { accepted, applied };
}

export async function writeStatus(custom: CustomObjectsApi, fb: FilterBinding, desired: DesiredStatus): Promise<'written' | 'unchanged' | 'gone'> {
  const now = new Date().toISOString();
  const old = fb.status?.conditions ?? [];
  const generation = fb.metadata.generation;
  const conditions: Condition[] = [desired.accepted, desired.applied].map((c) => {
    const prev = old.find((o) => o.type === c.type);
    const same = prev && prev.status === c.status;
    return { ...c, ...(generation !== undefined ? { observedGeneration: generation } : {}), lastTransitionTime: same ? prev.lastTransitionTime : now };
  });
  const unchanged = fb.status?.observedGeneration === generation && conditions.every((c) => {
    const prev = old.find((o) => o.type === c.type);
    return prev && prev.status === c.status && prev.reason === c.reason && prev.message === c.message;
  });
  if (unchanged) return 'unchanged';
  try {
    await custom.patchNamespacedCustomObjectStatus({
      group: GROUP, version: VERSION, plural: PLURAL, namespace: fb.metadata.namespace, name: fb.metadata.name,
      body: { status: { observedGeneration: generation, conditions } },
    }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    return 'written';
  } catch (e) {
    if (statusCode(e) === 404) return 'gone';
    throw new Error(`writing the status of FilterBinding ${fb.metadata.namespace}/${fb.metadata.name}: ${errorMessage(e)}`, { cause: e });
  }
}
