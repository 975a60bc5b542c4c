import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { AmbitError } from './errors.js';

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true });
const compiled = new WeakMap<object, ValidateFunction>();

/** Says where and what, e.g. `/rules/0/path: must be string`. */
export function formatSchemaErrors(errors: readonly ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => {
      const at = e.instancePath === '' ? '/' : e.instancePath;
      const extra = e.keyword === 'additionalProperties'
        ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})`
        : e.keyword === 'enum'
          ? ` (one of ${JSON.stringify((e.params as { allowedValues?: unknown }).allowedValues)})`
          : '';
      return `${at}: ${e.message ?? e.keyword}${extra}`;
    })
    .join('; ');
}

/**
 * Validates a binding's config against a filter's JSON schema (filling in schema
 * defaults) and returns it. Throws AMBIT_ERR_CONFIG_INVALID naming each JSON path.
 */
export function validateConfig(schema: object | undefined, config: unknown, filter: string): unknown {
  const value = config === undefined ? {} : structuredClone(config);
  if (!schema) return value;
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (!validate(value)) {
    throw new AmbitError(
      'AMBIT_ERR_CONFIG_INVALID',
      `AMBIT_ERR_CONFIG_INVALID: config of filter ${filter} is invalid: ${formatSchemaErrors(validate.errors)}; see the filter's schema.json`,
    );
  }
  return value;
}
