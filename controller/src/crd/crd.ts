/**
 * The CustomResourceDefinitions, generated from the TypeBox schemas: TypeBox's JSON Schema
 * made structural (apiextensions v1): `additionalProperties: false` dropped (the API
 * server prunes unknown fields instead), TypeBox's own markers removed.
 */
import { FilterBindingSpecSchema, FilterBindingStatusSchema, GROUP, KIND, PLURAL, VERSION } from './schema.js';

/** JSON Schema → a structural OpenAPI v3 schema for a CRD. */
export function structural(schema: unknown): Record<string, unknown> {
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!node || typeof node !== 'object') return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
      if (k === 'additionalProperties' && (v === false || (v === true && (node as Record<string, unknown>)['x-kubernetes-preserve-unknown-fields']))) continue;
      if (k === '$id' || k === '$schema') continue;
      if (k === 'properties' || k === 'patternProperties') {
        out[k] = Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([p, s]) => [p, walk(s)]));
        continue;
      }
      out[k] = walk(v);
    }
    // A record (Type.Record) is an object with patternProperties: CRDs say it with additionalProperties.
    if (out.patternProperties) {
      const values = Object.values(out.patternProperties as Record<string, unknown>);
      delete out.patternProperties;
      out.additionalProperties = values[0] ?? { type: 'string' };
    }
    return out;
  };
  return JSON.parse(JSON.stringify(walk(schema))) as Record<string, unknown>;
}

export function filterBindingCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}`, labels: { 'app.kubernetes.io/part-of': 'ambit' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, plural: PLURAL, singular: 'filterbinding', shortNames: ['fb'], categories: ['ambit'] },
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: 'Direction', type: 'string', jsonPath: '.spec.direction' },
          { name: 'Accepted', type: 'string', jsonPath: '.status.conditions[?(@.type=="Accepted")].status' },
          { name: 'Applied', type: 'string', jsonPath: '.status.conditions[?(@.type=="Applied")].status' },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            description: 'Binds WebAssembly filters to traffic of a namespace, a Service or selected workloads (like Istio\'s WasmPlugin).',
            required: ['spec'],
            properties: {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: structural(FilterBindingSpecSchema),
              status: structural(FilterBindingStatusSchema),
            },
          },
        },
      }],
    },
  };
}

/** Every CRD the controller owns. */
export function crds(): Record<string, unknown>[] {
  return [filterBindingCrd()];
}
