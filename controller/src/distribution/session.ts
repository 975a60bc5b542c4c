/**
 * One node proxy's config stream: what it was sent (resource versions), the namespaces it
 * sees, and the responses it has not answered yet. `diff` computes the next incremental
 * response: resources in scope whose version the node does not have, and removals of those
 * it has that left its scope or the mesh.
 */
import type * as grpc from '@grpc/grpc-js';
import type { controlplane } from '@ambit/runtime';
import type { Resource, ResourceTable } from '../model/table.js';

type ConfigRequest = controlplane.ConfigRequest;
type ConfigResponse = controlplane.ConfigResponse;

export class NodeSession {
  readonly sent = new Map<string, string>();
  scope: ReadonlySet<string> | '*' = new Set();
  /** nonce → when it was sent. */
  readonly outstanding = new Map<string, number>();
  ackedVersion = '';
  lastError: string | undefined;
  connectedAt = Date.now();
  #nonce = 0;

  constructor(
    readonly node: string,
    readonly call: grpc.ServerDuplexStream<ConfigRequest, ConfigResponse>,
    initial: Record<string, string>,
    /** Whether another node's entry concerns this one (see MeshModel.nodeConcerns); default: every node does. */
    private readonly nodeConcerns: (other: string, scope: ReadonlySet<string> | '*') => boolean = () => true,
  ) {
    for (const [k, v] of Object.entries(initial)) this.sent.set(k, v);
  }

  inScope(r: Pick<Resource, 'type' | 'name' | 'namespace'>): boolean {
    if (r.type === 'node') return r.name === this.node || this.nodeConcerns(r.name, this.scope);
    return r.namespace === undefined || this.scope === '*' || this.scope.has(r.namespace);
  }

  /** The response bringing the node from what it has to `keys` (all of its scope when undefined), or undefined when nothing changes. */
  diff(table: ResourceTable, systemVersion: string, keys?: Iterable<string>): ConfigResponse | undefined {
    const resources: ConfigResponse['resources'] = [];
    const removed: ConfigResponse['removed'] = [];
    const consider = (key: string) => {
      const r = table.get(key);
      if (r && this.inScope(r)) {
        if (this.sent.get(key) !== r.version) {
          resources.push({ type: r.type, name: r.name, version: r.version, body: r.json });
          this.sent.set(key, r.version);
        }
      } else if (this.sent.has(key)) {
        const slash = key.indexOf('/');
        removed.push({ type: key.slice(0, slash), name: key.slice(slash + 1) });
        this.sent.delete(key);
      }
    };
    if (keys) {
      for (const k of keys) consider(k);
    } else {
      const wanted = new Set(table.keysIn(this.scope));
      for (const k of wanted) consider(k);
      for (const k of [...this.sent.keys()]) if (!wanted.has(k)) consider(k);
    }
    if (resources.length === 0 && removed.length === 0) return undefined;
    const nonce = `${this.node}-${++this.#nonce}`;
    this.outstanding.set(nonce, Date.now());
    return { systemVersion, nonce, resources, removed };
  }
}
