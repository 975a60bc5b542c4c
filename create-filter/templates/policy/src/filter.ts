import { Type, counter, defineFilter, log, respond } from '@ambit/filter-sdk';

/**
 * __FILTER_NAME__: a request policy.
 * - a method not in `allowedMethods` is answered 405;
 * - a path starting with one of `denyPathPrefixes` is answered 403;
 * - everything else goes through. Each refusal is counted and logged.
 */
export default defineFilter({
  name: '__FILTER_NAME__',
  capabilities: ['log', 'counters'],
  config: Type.Object(
    {
      denyPathPrefixes: Type.Array(Type.String({ pattern: '^/' }), { default: ['/admin'] }),
      allowedMethods: Type.Array(Type.String({ pattern: '^[A-Z]+$' }), {
        default: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      }),
    },
    { additionalProperties: false },
  ),

  onRequest(req, ctx) {
    if (!ctx.config.allowedMethods.includes(req.method)) {
      counter('denied_method');
      return respond(405, `method ${req.method} not allowed by policy __FILTER_NAME__\n`, {
        'content-type': 'text/plain',
        allow: ctx.config.allowedMethods.join(', '),
      });
    }
    const denied = ctx.config.denyPathPrefixes.find((p) => req.path.startsWith(p));
    if (denied) {
      counter('denied_path');
      log.info(`denied ${req.method} ${req.path} from ${ctx.source.identity ?? ctx.source.address}`);
      return respond(403, `forbidden by policy __FILTER_NAME__: ${denied} is denied\n`, { 'content-type': 'text/plain' });
    }
  },
});
