import { Type, defineFilter } from '@ambit/filter-sdk';

const Rewrite = Type.Object(
  {
    set: Type.Array(Type.Object({ name: Type.String({ pattern: '^[a-z0-9-]+$' }), value: Type.String() }), { default: [] }),
    remove: Type.Array(Type.String({ pattern: '^[a-z0-9-]+$' }), { default: [] }),
  },
  { additionalProperties: false, default: {} },
);

/**
 * __FILTER_NAME__: rewrites headers. `request` changes what the upstream receives,
 * `response` what the client receives; in each, `remove` runs before `set`.
 */
export default defineFilter({
  name: '__FILTER_NAME__',
  config: Type.Object(
    {
      request: Rewrite,
      response: Type.Object(
        {
          set: Type.Array(Type.Object({ name: Type.String({ pattern: '^[a-z0-9-]+$' }), value: Type.String() }), {
            default: [{ name: 'x-__FILTER_NAME__', value: 'rewritten' }],
          }),
          remove: Type.Array(Type.String({ pattern: '^[a-z0-9-]+$' }), { default: ['server'] }),
        },
        { additionalProperties: false, default: {} },
      ),
    },
    { additionalProperties: false },
  ),

  onRequest(req, ctx) {
    for (const name of ctx.config.request.remove) req.headers.delete(name);
    for (const h of ctx.config.request.set) req.headers.set(h.name, h.value);
  },

  onResponse(res, ctx) {
    for (const name of ctx.config.response.remove) res.headers.delete(name);
    for (const h of ctx.config.response.set) res.headers.set(h.name, h.value);
  },
});
