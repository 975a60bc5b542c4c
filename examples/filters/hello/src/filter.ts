import { Type, counter, defineFilter, deny, log, respond, retry } from '@ambit/filter-sdk';

/**
 * The example filter of the Ambit quick start.
 * - connection: refuses peers without an mTLS identity when `requireIdentity` is set;
 * - request: answers 403 for denied path prefixes, otherwise adds a greeting header;
 * - response: retries the statuses in `retryOn` until `maxAttempts`, and reports the
 *   attempt count in `x-ambit-attempts`.
 */
export default defineFilter({
  name: 'hello',
  capabilities: ['log', 'counters'],
  config: Type.Object(
    {
      header: Type.String({ default: 'x-ambit-hello', pattern: '^[a-z0-9-]+$' }),
      denyPathPrefixes: Type.Array(Type.String({ pattern: '^/' }), { default: ['/admin'] }),
      retryOn: Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), { default: [503] }),
      maxAttempts: Type.Integer({ minimum: 1, maximum: 10, default: 3 }),
      requireIdentity: Type.Boolean({ default: false }),
    },
    { additionalProperties: false },
  ),

  onConnection(_conn, ctx) {
    if (ctx.config.requireIdentity && !ctx.source.identity) {
      return deny(`hello: ${ctx.source.address} has no mTLS identity`);
    }
  },

  onRequest(req, ctx) {
    const denied = ctx.config.denyPathPrefixes.find((p) => req.path.startsWith(p));
    if (denied) {
      counter('denied');
      log.info(`denied ${req.method} ${req.path} from ${ctx.source.identity ?? ctx.source.address}`);
      return respond(403, `forbidden by policy hello: ${denied} is denied\n`, { 'content-type': 'text/plain' });
    }
    req.headers.set(ctx.config.header, `hello from ${ctx.source.workload ?? ctx.source.address}`);
  },

  onResponse(res, ctx) {
    if (ctx.config.retryOn.includes(res.status) && ctx.attempt < ctx.config.maxAttempts) {
      counter('retries');
      return retry({ reason: `upstream answered ${res.status}` });
    }
    res.headers.set('x-ambit-attempts', String(ctx.attempt));
  },
});
