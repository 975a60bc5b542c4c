/**
 * The controller's derived resources: what node proxies receive. Each is a fragment of the
 * mesh config (a workload, a service, a binding, a node, the mesh settings) with a version
 * (a hash of its body) and a scope (the namespace it belongs to, or the whole mesh).
 * Sources (a Pod, an AuthorizationPolicy, …) own the resources made from them:
 * `setOwned` replaces what a source owns, and only resources whose body changed count as
 * changes, collected until `takeChanges`.
 */
import { createHash } from 'node:crypto';

export type ResourceType = 'mesh' | 'node' | 'workload' | 'service' | 'binding';

export interface Resource {
  readonly type: ResourceType;
  readonly name: string;
  /** `type/name`. */
  readonly key: string;
  /** The namespace whose nodes see it; undefined: every node. */
  readonly namespace: string | undefined;
  readonly body: unknown;
  /** JSON of `body`, sent as is. */
  readonly json: Buffer;
  readonly version: string;
}

export function resource(type: ResourceType, name: string, namespace: string | undefined, body: unknown): Resource {
  const json = Buffer.from(JSON.stringify(body));
  return { type, name, key: `${type}/${name}`, namespace, body, json, version: createHash('sha256').update(json).digest('base64url').slice(0, 16) };
}

export class ResourceTable {
  readonly #resources = new Map<string, Resource>();
  readonly #owners = new Map<string, Set<string>>();
  readonly #byNamespace = new Map<string, Set<string>>();
  readonly #global = new Set<string>();
  #changed = new Set<string>();

  get(key: string): Resource | undefined {
    return this.#resources.get(key);
  }

  get size(): number {
    return this.#resources.size;
  }

  /** Keys of the resources of these namespaces plus the global ones ('*': all). */
  keysIn(namespaces: ReadonlySet<string> | '*'): Iterable<string> {
    if (namespaces === '*') return this.#resources.keys();
    const keys: string[] = [...this.#global];
    for (const ns of namespaces) for (const k of this.#byNamespace.get(ns) ?? []) keys.push(k);
    return keys;
  }

  /** Replaces everything `owner` made with `resources`. */
  setOwned(owner: string, resources: readonly Resource[]): void {
    const before = this.#owners.get(owner) ?? new Set<string>();
    const now = new Set<string>();
    for (const r of resources) {
      now.add(r.key);
      const old = this.#resources.get(r.key);
      if (old?.version === r.version && old.namespace === r.namespace) continue;
      if (old) this.#unindex(old);
      this.#resources.set(r.key, r);
      this.#index(r);
      this.#changed.add(r.key);
    }
    for (const k of before) {
      if (now.has(k)) continue;
      const old = this.#resources.get(k);
      if (old) {
        this.#unindex(old);
        this.#resources.delete(k);
        this.#changed.add(k);
      }
    }
    if (now.size > 0) this.#owners.set(owner, now);
    else this.#owners.delete(owner);
  }

  owned(owner: string): ReadonlySet<string> {
    return this.#owners.get(owner) ?? new Set();
  }

  /** Counts `key` as changed: who may see it changed, though its body did not. */
  touch(key: string): void {
    if (this.#resources.has(key)) this.#changed.add(key);
  }

  /** Keys changed (added, updated or removed) since the last call. */
  takeChanges(): Set<string> {
    const c = this.#changed;
    this.#changed = new Set();
    return c;
  }

  hasChanges(): boolean {
    return this.#changed.size > 0;
  }

  #index(r: Resource): void {
    if (r.namespace === undefined) this.#global.add(r.key);
    else {
      let s = this.#byNamespace.get(r.namespace);
      if (!s) this.#byNamespace.set(r.namespace, (s = new Set()));
      s.add(r.key);
    }
  }

  #unindex(r: Resource): void {
    if (r.namespace === undefined) this.#global.delete(r.key);
    else this.#byNamespace.get(r.namespace)?.delete(r.key);
  }
}
