/**
 * Filter config values that a filter's schema marks secret (`"x-ambit-secret": true` on the
 * property, see the SDK README) become {@link REDACTED} in `/config_dump`. Values of fields named
 * like secrets or credential headers are redacted when the dump is written
 * (`configDumpJson` in ../admin/server.ts), whatever the schema says.
 */
import { REDACTED } from '../admin/server.js';
import type { ResolvedFilters } from '../config/filters.js';
import type { MeshConfig } from '../config/schema.js';

export { REDACTED };

type Schema = Record<string, unknown>;
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The sub-schemas a value may be checked against here (itself and its allOf/anyOf/oneOf branches). */
function branches(schema: Schema | undefined): Schema[] {
  if (!schema) return [];
  const out: Schema[] = [schema];
  for (const k of ['allOf', 'anyOf', 'oneOf']) {
    const list = schema[k];
    if (Array.isArray(list)) for (const s of list) if (isObject(s)) out.push(...branches(s));
  }
  return out;
}

function childSchema(schemas: Schema[], key: string): Schema | undefined {
  for (const s of schemas) {
    const props = s['properties'];
    if (isObject(props) && isObject(props[key])) return props[key];
  }
  for (const s of schemas) {
    if (isObject(s['additionalProperties'])) return s['additionalProperties'];
  }
  return undefined;
}

function itemSchema(schemas: Schema[]): Schema | undefined {
  for (const s of schemas) if (isObject(s['items'])) return s['items'];
  return undefined;
}

/** `value` with what `schema` (the filter's config schema) marks secret replaced. */
export function redactFilterConfig(value: unknown, schema: object | undefined): unknown {
  const schemas = branches(schema as Schema | undefined);
  if (schemas.some((s) => s['x-ambit-secret'] === true)) return REDACTED;
  if (Array.isArray(value)) {
    const items = itemSchema(schemas);
    return value.map((v) => redactFilterConfig(v, items));
  }
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactFilterConfig(v, childSchema(schemas, k))]));
}

/** The mesh config with every binding's filter config redacted against that filter's schema. */
export function redactMeshConfig(config: MeshConfig, resolved: ResolvedFilters): MeshConfig {
  return {
    ...config,
    bindings: config.bindings.map((b, i) => ({
      ...b,
      filters: b.filters.map((f, j) => f.config === undefined ? f : {
        ...f,
        config: redactFilterConfig(f.config, resolved.filters.get(`/bindings/${i}/filters/${j}`)?.artifact.schema),
      }),
    })),
  };
}
