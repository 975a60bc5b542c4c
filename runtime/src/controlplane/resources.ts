/**
 * The node's copy of what the controller sent: resources by type and name, merged from
 * incremental responses, and assembled into one mesh config value (validated by the same
 * code as a YAML file). JSON pointers into the assembled config map back to resources, so
 * a NACK names the resource and the path inside it.
 */
import type { ResourceIssue, WireResource, ResourceKey } from './proto.js';

/** Resource types, and where each lands in the mesh config. */
export const RESOURCE_LISTS = { node: 'nodes', workload: 'workloads', service: 'services', binding: 'bindings' } as const;
export type ListResourceType = keyof typeof RESOURCE_LISTS;
/** `mesh`: trust domain, identity settings and the mesh's roots (one, named `mesh`). */
export const MESH_RESOURCE = 'mesh';

export interface MeshResourceBody {
  trustDomain: string;
  identity?: Record<string, unknown>;
  /** PEM trust anchors of the mesh. */
  roots?: string;
}

interface Held {
  version: string;
  body: unknown;
}

export class ResourceSet {
  readonly #byKey = new Map<string, Held>();

  /** Merges a response. Throws (AMBIT_ERR_CONTROLLER_PROTOCOL) on a body that is not JSON. */
  apply(resources: readonly WireResource[], removed: readonly ResourceKey[]): void {
    const parsed = resources.map((r) => {
      try {
        return { key: `${r.type}/${r.name}`, held: { version: r.version, body: JSON.parse(r.body.toString('utf8')) as unknown } };
      } catch (e) {
        throw new Error(`resource ${r.type}/${r.name} is not JSON: ${(e as Error).message}`);
      }
    });
    for (const k of removed) this.#byKey.delete(`${k.type}/${k.name}`);
    for (const { key, held } of parsed) this.#byKey.set(key, held);
  }

  /** `type/name` → version: what a reconnecting node tells the controller it has. */
  versions(): Record<string, string> {
    return Object.fromEntries([...this.#byKey].map(([k, v]) => [k, v.version]));
  }

  /** The version held of `type/name`, if any. */
  version(key: string): string | undefined {
    return this.#byKey.get(key)?.version;
  }

  get size(): number {
    return this.#byKey.size;
  }

  mesh(): MeshResourceBody | undefined {
    return this.#byKey.get(`${MESH_RESOURCE}/${MESH_RESOURCE}`)?.body as MeshResourceBody | undefined;
  }

  /**
   * The mesh config of node `node`: `base` (node-local settings: proxy, capture, … and any
   * lists of its own, which come first) plus the controller's resources, each list sorted
   * by resource name. Returns a fresh value (validation fills in defaults in place).
   */
  assemble(node: string, base: Record<string, unknown> = {}): { value: Record<string, unknown>; locate: (pointer: string) => ResourceIssue | undefined } {
    const value: Record<string, unknown> = structuredClone(base);
    value.node = node;
    const mesh = this.mesh();
    if (mesh) {
      value.trustDomain = mesh.trustDomain;
      if (mesh.identity) value.identity = { ...(value.identity as object | undefined), ...structuredClone(mesh.identity) };
    }
    const owners = new Map<string, { offset: number; names: string[] }>();
    for (const [type, list] of Object.entries(RESOURCE_LISTS)) {
      const own = Array.isArray(value[list]) ? (value[list] as unknown[]) : [];
      const entries = [...this.#byKey].filter(([k]) => k.startsWith(`${type}/`)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      value[list] = [...own, ...entries.map(([, v]) => structuredClone(v.body))];
      owners.set(list, { offset: own.length, names: entries.map(([k]) => k) });
    }
    const locate = (pointer: string): ResourceIssue | undefined => {
      const m = /^\/([a-z]+)\/(\d+)(\/.*)?$/.exec(pointer);
      const owner = m ? owners.get(m[1]!) : undefined;
      if (!m || !owner) return undefined;
      const i = Number(m[2]) - owner.offset;
      const resource = owner.names[i];
      return resource ? { resource, pointer: m[3] ?? '', message: '' } : undefined;
    };
    return { value, locate };
  }
}
