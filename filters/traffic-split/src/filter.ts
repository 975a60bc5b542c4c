import { Type, counter, defineFilter, random, traffic } from '@ambit/filter-sdk';
import type { HeaderMap } from '@ambit/filter-sdk';

/**
 * Weighted routing across the destination service's subsets, like the weighted
 * `route` of an Istio VirtualService (`95/5` canary). Subsets are defined on the
 * service in the mesh config (`services[].subsets`: a name and workload labels); the
 * filter tells the proxy which one takes the request (`traffic.routeToSubset`), so no
 * routing header leaks to the upstream.
 *
 * Sticky sessions (optional): `sticky.header` hashes a request header's value,
 * `sticky.cookie` hashes a cookie's value; the same value always lands on the same
 * subset while the weights stay the same. A request without the cookie gets one (its
 * request id) on the response, so its next requests stick. Without a sticky value the
 * choice is random by weight.
 */

interface Config {
  subsets: Array<{ name: string; weight: number }>;
  sticky?: { header?: string; cookie?: { name: string; ttlSeconds: number; path: string } };
}

let total = 0;

/** FNV-1a (32-bit): a stable hash of the sticky value. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  // Final avalanche so that similar values spread evenly.
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0; h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35) >>> 0; h ^= h >>> 16;
  return h >>> 0;
}

/** The subset at `point` in [0, total). */
function pick(subsets: Config['subsets'], point: number): string {
  let acc = 0;
  for (const s of subsets) {
    acc += s.weight;
    if (point < acc) return s.name;
  }
  return subsets[subsets.length - 1]!.name;
}

/** The cookie value a request without one gets: its request id, if cookie-safe, else a hash of it. */
function token(requestId: string): string {
  return /^[A-Za-z0-9._-]{1,128}$/.test(requestId) ? requestId : `r${hash(requestId).toString(16)}`;
}

function cookieValue(headers: HeaderMap, name: string): string | undefined {
  for (const line of headers.getAll('cookie')) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

export default defineFilter({
  name: 'traffic-split',
  capabilities: ['random', 'traffic', 'counters'],
  config: Type.Object(
    {
      subsets: Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1, description: 'A subset of the destination service (services[].subsets[].name).' }),
            weight: Type.Integer({ minimum: 0, description: 'Relative weight (e.g. 95 and 5).' }),
          },
          { additionalProperties: false },
        ),
        { minItems: 1 },
      ),
      sticky: Type.Optional(Type.Object(
        {
          header: Type.Optional(Type.String({ minLength: 1, description: 'Hash this request header\'s value.' })),
          cookie: Type.Optional(Type.Object(
            {
              name: Type.String({ minLength: 1, pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" }),
              ttlSeconds: Type.Integer({ minimum: 0, default: 0, description: 'Max-Age of a cookie the filter sets; 0: a session cookie.' }),
              path: Type.String({ default: '/' }),
            },
            { additionalProperties: false },
          )),
        },
        { additionalProperties: false },
      )),
    },
    { additionalProperties: false },
  ),

  setup(config: Config) {
    const names = new Set<string>();
    for (const s of config.subsets) {
      if (names.has(s.name)) throw new Error(`subset ${s.name} is listed twice`);
      names.add(s.name);
    }
    total = config.subsets.reduce((a, s) => a + s.weight, 0);
    if (total === 0) throw new Error('the weights add up to 0: give at least one subset a weight');
    if (config.sticky && !config.sticky.header && !config.sticky.cookie) throw new Error('sticky: give a header or a cookie');
  },

  onRequest(req, ctx) {
    const { subsets, sticky } = ctx.config;
    let key: string | undefined;
    if (sticky?.header) key = req.headers.get(sticky.header);
    if (key === undefined && sticky?.cookie) key = cookieValue(req.headers, sticky.cookie.name) ?? token(ctx.requestId);
    const point = key !== undefined ? hash(key) % total : Math.floor(random() * total);
    const name = pick(subsets, point);
    traffic.routeToSubset(name);
    counter(`routed_${name}`);
  },

  onResponse(res, ctx) {
    const cookie = ctx.config.sticky?.cookie;
    if (!cookie) return;
    if (ctx.config.sticky?.header && ctx.request.headers.get(ctx.config.sticky.header) !== undefined) return;
    if (cookieValue(ctx.request.headers, cookie.name) !== undefined) return;
    const attrs = [`${cookie.name}=${token(ctx.requestId)}`, `Path=${cookie.path}`, 'HttpOnly'];
    if (cookie.ttlSeconds > 0) attrs.push(`Max-Age=${cookie.ttlSeconds}`);
    res.headers.append('set-cookie', attrs.join('; '));
  },
});
