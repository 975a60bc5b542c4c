/**
 * The FilterBinding resource (`filterbindings.ambit.dev`), defined once with TypeBox: the
 * TypeScript types, the validation the controller runs, and the CRD's OpenAPI schema
 * (`./crd.ts`) all come from these schemas. Modelled on Istio's WasmPlugin: a target in the
 * binding's namespace, a direction, and an ordered list of filters, each an npm package
 * pinned by sha256 with its config (checked against the filter's own schema).
 */
import { Type, type Static, type SchemaOptions, type TSchema } from '@sinclair/typebox';
import { DIRECTIONS, FAILURE_POLICIES, INSTANCE_STRATEGIES } from '@ambit/runtime';

export const GROUP = 'ambit.dev';
export const VERSION = 'v1alpha1';
export const KIND = 'FilterBinding';
export const PLURAL = 'filterbindings';

function StringEnum<const T extends readonly string[]>(values: T, options: SchemaOptions = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}
function Obj<T extends Record<string, TSchema>>(properties: T, options: SchemaOptions = {}) {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

const DnsLabel = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' });

export const TargetSchema = Obj({
  service: Type.Optional(Type.String({ ...DnsLabel, description: 'A Service in the binding\'s namespace: outbound, traffic to it; inbound, traffic to its endpoints.' })),
  selector: Type.Optional(Obj({
    matchLabels: Type.Record(Type.String(), Type.String(), { description: 'Pods of the binding\'s namespace carrying all of these labels.' }),
  }, { description: 'A workload selector, like WasmPlugin\'s selector.' })),
}, {
  description: 'What the filters apply to: one of service or selector; neither: every service and workload of the namespace.',
  'x-kubernetes-validations': [{ rule: '!(has(self.service) && has(self.selector))', message: 'give service or selector, not both' }],
});

export const FilterSchema = Obj({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: 'Name in logs, metrics and error responses. Default: the package\'s filter name.' })),
  package: Type.String({
    minLength: 1, maxLength: 214,
    description: 'The filter\'s npm spec (`@vendor/filter-x@^1.2`, `@ambit/filter-authz`), installed beside the controller and every node proxy.',
  }),
  sha256: Type.Optional(Type.String({
    pattern: '^([0-9a-fA-F]{64}|sha256-[A-Za-z0-9+/]{43}=)$',
    description: 'Pins the component: hex sha256 or `sha256-<base64>` (npm integrity form). A node whose copy differs rejects the config.',
  })),
  config: Type.Optional(Type.Object({}, {
    additionalProperties: true, 'x-kubernetes-preserve-unknown-fields': true,
    description: 'The filter\'s config, validated against the filter package\'s schema; errors are reported in status with their JSON path.',
  })),
  failurePolicy: Type.Optional(StringEnum(FAILURE_POLICIES, { description: 'fail-closed (default): a trap or missed deadline answers 503; fail-open skips the filter.' })),
  deadlineMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000, description: 'Longest a single filter call may run. Default 50.' })),
  memoryMaxPages: Type.Optional(Type.Integer({ minimum: 1, maximum: 65_536, description: 'Linear memory cap in 64 KiB pages. Default 1024.' })),
  instances: Type.Optional(StringEnum(INSTANCE_STRATEGIES, { description: 'pooled (default) or per-request.' })),
});

export const FilterBindingSpecSchema = Obj({
  target: Type.Optional(TargetSchema),
  direction: StringEnum(DIRECTIONS, { description: 'outbound: traffic leaving workloads, matched on its destination; inbound: traffic arriving at workloads.' }),
  priority: Type.Optional(Type.Integer({ minimum: -1000, maximum: 1000, description: 'Higher runs first among bindings matching the same traffic; ties by name. Default 0.' })),
  filters: Type.Array(FilterSchema, { minItems: 1, maxItems: 32, description: 'Filters, in chain order.' }),
}, { description: 'Which filters run on which traffic.' });

export const ConditionSchema = Obj({
  type: Type.String({ minLength: 1, maxLength: 316 }),
  status: StringEnum(['True', 'False', 'Unknown'] as const),
  reason: Type.String({ minLength: 1, maxLength: 1024 }),
  message: Type.String({ maxLength: 32_768 }),
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  lastTransitionTime: Type.String({ format: 'date-time' }),
});

export const FilterBindingStatusSchema = Obj({
  observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
  conditions: Type.Optional(Type.Array(ConditionSchema, {
    maxItems: 8,
    'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'],
    description: 'Accepted: the controller validated it (package found, pin matches, config valid against the filter\'s schema). Applied: no node proxy rejected it.',
  })),
});

export type FilterBindingSpec = Static<typeof FilterBindingSpecSchema>;
export type FilterBindingStatus = Static<typeof FilterBindingStatusSchema>;
export type FilterSpec = Static<typeof FilterSchema>;
export type Condition = Static<typeof ConditionSchema>;

export interface FilterBinding {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; generation?: number; uid?: string; resourceVersion?: string };
  spec: FilterBindingSpec;
  status?: FilterBindingStatus;
}
