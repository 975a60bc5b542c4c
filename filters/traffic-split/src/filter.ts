import { Type, counter, defineFilter, random, respond, traffic } from '@ambit/filter-sdk';
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
 *
 * Routes (optional, Gateway API HTTPRoute rules, GAMMA): an ordered list, each with
 * matches (path `Exact` / `PathPrefix`, method, headers and query parameters, all
 * `Exact`) and its own weighted subsets. The first route with a match that the request
 * meets decides, so list them in precedence order; a request meeting none goes by the
 * top-level `subsets`, or gets `404` when there are none.
 */

type Split = Array<{ name: string; weight: number }>;

interface Match {
  path?: { type: 'Exact' | 'PathPrefix'; value: string };
  method?: string;
  headers?: Array<{ name: string; value: string }>;
  queryParams?: Array<{ name: string; value: string }>;
}

interface Route {
  name?: string;
  matches: Match[];
  subsets: Split;
}

interface Config {
  subsets?: Split;
  routes?: Route[];
  sticky?: { header?: string; cookie?: { name: string; ttlSeconds: number; path: string } };
}

let total = 0;
/** Each route's weights added up (0: the route answers 500, as Gateway API asks). */
let routeTotals: number[] = [];

/** FNV-1a (32-bit): a stable hash of the sticky value. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  // Final avalanche so that similar values spread evenly.
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0; h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35) >>> 0; h ^= h >>> 16;
  return h >>> 0;
}

/** The subset at `point` in [0, total). */
function pick(subsets: Split, point: number): string {
  let acc = 0;
  for (const s of subsets) {
    acc += s.weight;
    if (point < acc) return s.name;
  }
  return subsets[subsets.length - 1]!.name;
}

/** Gateway API's PathPrefix: whole path elements (`/a` matches `/a`, `/a/`, `/a/b`, not `/ab`); a trailing `/` in the prefix is ignored. */
function prefixMatches(prefix: string, path: string): boolean {
  const p = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '/') return true;
  return path === p || (path.startsWith(p) && path.charAt(p.length) === '/');
}

function queryValue(query: string, name: string): string | undefined {
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const k = eq < 0 ? part : part.slice(0, eq);
    if (k === name) return eq < 0 ? '' : part.slice(eq + 1);
  }
  return undefined;
}

function matches(m: Match, method: string, target: string, headers: HeaderMap): boolean {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (m.path && !(m.path.type === 'Exact' ? path === m.path.value : prefixMatches(m.path.value, path))) return false;
  if (m.method !== undefined && method !== m.method) return false;
  for (const h of m.headers ?? []) if (headers.get(h.name) !== h.value) return false;
  const query = q < 0 ? '' : target.slice(q + 1);
  for (const qp of m.queryParams ?? []) if (queryValue(query, qp.name) !== qp.value) return false;
  return true;
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

function splitSchema(description: string, minTotal = 1) {
  return Type.Array(
    Type.Object(
      {
        name: Type.String({ minLength: 1, description: 'A subset of the destination service (services[].subsets[].name).' }),
        weight: Type.Integer({ minimum: 0, description: 'Relative weight (e.g. 95 and 5).' }),
      },
      { additionalProperties: false },
    ),
    { minItems: minTotal, description },
  );
}

function nameValue(description: string) {
  return Type.Object({ name: Type.String({ minLength: 1 }), value: Type.String() }, { additionalProperties: false, description });
}

export default defineFilter({
  name: 'traffic-split',
  capabilities: ['random', 'traffic', 'counters'],
  config: Type.Object(
    {
      subsets: Type.Optional(splitSchema('Weighted subsets of requests no route takes (all of them without routes).')),
      routes: Type.Optional(Type.Array(
        Type.Object(
          {
            name: Type.Optional(Type.String({ minLength: 1, description: 'For logs and counters (e.g. the HTTPRoute rule it comes from).' })),
            matches: Type.Array(
              Type.Object(
                {
                  path: Type.Optional(Type.Object(
                    {
                      type: Type.Union([Type.Literal('Exact'), Type.Literal('PathPrefix')], { description: '`Exact`: the path (without the query) equals `value`; `PathPrefix`: it starts with `value` by whole path elements.' }),
                      value: Type.String({ minLength: 1, pattern: '^/' }),
                    },
                    { additionalProperties: false },
                  )),
                  method: Type.Optional(Type.String({ minLength: 1, description: 'The request method, exactly.' })),
                  headers: Type.Optional(Type.Array(nameValue('Header name (case-insensitive) and its exact value.'))),
                  queryParams: Type.Optional(Type.Array(nameValue('Query parameter name and its exact value.'))),
                },
                { additionalProperties: false },
              ),
              { description: 'The route takes a request that meets one of these (every field of it). Empty: every request.' },
            ),
            subsets: splitSchema('Weighted subsets of the requests this route takes; all weights 0: such requests get 500.', 0),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, description: 'In precedence order: the first route with a match the request meets decides.' },
      )),
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
    if (!config.subsets && !config.routes) throw new Error('give subsets, routes or both');
    const unique = (split: Split, where: string) => {
      const names = new Set<string>();
      for (const s of split) {
        if (names.has(s.name)) throw new Error(`${where}subset ${s.name} is listed twice`);
        names.add(s.name);
      }
      return split.reduce((a, s) => a + s.weight, 0);
    };
    total = config.subsets ? unique(config.subsets, '') : 0;
    if (config.subsets && total === 0) throw new Error('the weights add up to 0: give at least one subset a weight');
    routeTotals = (config.routes ?? []).map((r, i) => unique(r.subsets, `routes[${i}]: `));
    if (config.sticky && !config.sticky.header && !config.sticky.cookie) throw new Error('sticky: give a header or a cookie');
  },

  onRequest(req, ctx) {
    const { sticky, routes } = ctx.config;
    let subsets = ctx.config.subsets;
    let sum = total;
    if (routes) {
      const i = routes.findIndex((r) => r.matches.length === 0 || r.matches.some((m) => matches(m, req.method, req.path, req.headers)));
      if (i >= 0) {
        subsets = routes[i]!.subsets;
        sum = routeTotals[i]!;
        if (sum === 0) {
          counter('no_backend');
          return respond(500, `route ${routes[i]!.name ?? i} has no backend with a weight\n`, { 'content-type': 'text/plain' });
        }
      } else if (!subsets) {
        counter('no_route');
        return respond(404, `no route matches ${req.method} ${req.path}\n`, { 'content-type': 'text/plain' });
      }
    }
    let key: string | undefined;
    if (sticky?.header) key = req.headers.get(sticky.header);
    if (key === undefined && sticky?.cookie) key = cookieValue(req.headers, sticky.cookie.name) ?? token(ctx.requestId);
    const point = key !== undefined ? hash(key) % sum : Math.floor(random() * sum);
    const name = pick(subsets!, point);
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
