/**
 * Kubernetes Events on the objects the controller reads (an AuthorizationPolicy with fields
 * it cannot enforce, an HTTPRoute it cannot map, a policy a node rejected), written once per
 * object generation and message.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import { errorMessage } from './errors.js';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid?: string; generation?: number };
}

export class EventRecorder {
  readonly #sent = new Set<string>();

  constructor(
    private readonly core: CoreV1Api, private readonly instance: string, private readonly log: (m: string) => void,
    /** Whether this replica writes (the leader); a follower records nothing. */
    private readonly writes: () => boolean = () => true,
    private readonly wrote: () => void = () => undefined,
  ) {}

  async warn(target: EventTarget, reason: string, message: string): Promise<void> {
    if (!this.writes()) return;
    const key = `${target.metadata.uid ?? target.metadata.namespace + '/' + target.metadata.name}\0${target.metadata.generation ?? ''}\0${reason}\0${message}`;
    if (this.#sent.has(key)) return;
    this.#sent.add(key);
    const now = new Date();
    this.wrote();
    try {
      await this.core.createNamespacedEvent({
        namespace: target.metadata.namespace,
        body: {
          metadata: { generateName: `${target.metadata.name}.`, namespace: target.metadata.namespace },
          involvedObject: { apiVersion: target.apiVersion, kind: target.kind, name: target.metadata.name, namespace: target.metadata.namespace, ...(target.metadata.uid ? { uid: target.metadata.uid } : {}) },
          reason,
          message: message.slice(0, 1024),
          type: 'Warning',
          source: { component: 'ambit-controller' },
          reportingComponent: 'ambit-controller',
          reportingInstance: this.instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (e) {
      this.#sent.delete(key);
      this.log(`could not record event ${reason} on ${target.kind} ${target.metadata.namespace}/${target.metadata.name}: ${errorMessage(e)}`);
    }
  }
}
