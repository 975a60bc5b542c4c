import type { Type as TypeBoxType } from '@sinclair/typebox';

const marker = (): object => ({});

/**
 * Stands in for TypeBox's `Type` inside components: every builder (`Type.Object`,
 * `Type.String`, …) returns an empty object. Only the schema's shape at build time
 * matters; handlers read `ctx.config`, never the schema.
 */
export const Type = new Proxy({}, { get: () => marker }) as unknown as typeof TypeBoxType;
