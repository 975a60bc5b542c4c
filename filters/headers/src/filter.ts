import { Type, defineFilter } from '@ambit/filter-sdk';
import type { FilterContext, HeaderMap } from '@ambit/filter-sdk';

/**
 * Header rewriting, like Envoy's `request_headers_to_add` / `response_headers_to_remove`
 * and Istio's VirtualService `headers`:
 *
 * - `request` / `response`: `set` (replace every value), `add` (append one more),
 *   `remove` (drop every value); applied remove → set → add.
 * - Values may hold variables taken from the request's context: `%SOURCE_IDENTITY%`,
 *   `%SOURCE_WORKLOAD%`, `%SOURCE_NAMESPACE%`, `%SOURCE_ADDRESS%`,
 *   `%DESTINATION_SERVICE%`, `%DESTINATION_WORKLOAD%`, `%DESTINATION_NAMESPACE%`,
 *   `%DESTINATION_ADDRESS%`, `%REQUEST_ID%`, `%ROUTE%`, `%DIRECTION%`, `%ATTEMPT%`,
 *   `%METHOD%`, `%PATH%`, `%AUTHORITY%`, and `%REQ(name)%` (a request header). `%%` is
 *   a literal `%`. A header whose value comes out empty (every variable unknown) is not
 *   added, unless `keepEmpty` is set.
 */

interface Rules {
  set: Record<string, string>;
  add: Record<string, string>;
  remove: string[];
}

interface Config {
  request: Rules;
  response: Rules;
  keepEmpty: boolean;
}

/** Where variables come from; each is read only when a template names it. */
interface Source {
  ctx: FilterContext<Config>;
  /** The request (in the response phase, as it was forwarded). */
  req: { readonly method: string; readonly path: string; readonly authority: string; readonly headers: HeaderMap };
}

const VARIABLES: Record<string, (s: Source) => string | undefined> = {
  SOURCE_IDENTITY: (s) => s.ctx.source.identity,
  SOURCE_WORKLOAD: (s) => s.ctx.source.workload,
  SOURCE_NAMESPACE: (s) => s.ctx.source.namespace,
  SOURCE_ADDRESS: (s) => s.ctx.source.address,
  DESTINATION_SERVICE: (s) => s.ctx.service,
  DESTINATION_WORKLOAD: (s) => s.ctx.destination.workload,
  DESTINATION_NAMESPACE: (s) => s.ctx.destination.namespace,
  DESTINATION_ADDRESS: (s) => s.ctx.destination.address,
  REQUEST_ID: (s) => s.ctx.requestId,
  ROUTE: (s) => s.ctx.route,
  DIRECTION: (s) => s.ctx.direction,
  ATTEMPT: (s) => String(s.ctx.attempt),
  METHOD: (s) => s.req.method,
  PATH: (s) => s.req.path,
  AUTHORITY: (s) => s.req.authority,
};

type Part = string | ((s: Source) => string | undefined);

const TOKEN = /%%|%([A-Z_]+)(?:\(([^)%]*)\))?%/g;

/** Parses a value template into literal and variable parts; throws on an unknown variable. */
function compile(template: string, where: string): Part[] {
  const parts: Part[] = [];
  let last = 0;
  for (const m of template.matchAll(TOKEN)) {
    if (m.index! > last) parts.push(template.slice(last, m.index));
    last = m.index! + m[0].length;
    if (m[0] === '%%') { parts.push('%'); continue; }
    const name = m[1]!;
    const arg = m[2];
    if (name === 'REQ') {
      if (!arg?.trim()) throw new Error(`${where}: %REQ(...)% needs a header name, e.g. %REQ(user-agent)%`);
      const h = arg.trim().toLowerCase();
      parts.push((s) => s.req.headers.get(h));
      continue;
    }
    const fn = VARIABLES[name];
    if (!fn || arg !== undefined) {
      throw new Error(`${where}: unknown variable %${name}${arg !== undefined ? `(${arg})` : ''}%; known: ${[...Object.keys(VARIABLES), 'REQ(name)'].map((v) => `%${v}%`).join(', ')}`);
    }
    parts.push(fn);
  }
  if (last < template.length) parts.push(template.slice(last));
  return parts;
}

interface Compiled {
  set: Array<[string, Part[]]>;
  add: Array<[string, Part[]]>;
  remove: string[];
}

const compiled: { request: Compiled; response: Compiled } = {
  request: { set: [], add: [], remove: [] },
  response: { set: [], add: [], remove: [] },
};

function compileRules(r: Rules, where: string): Compiled {
  const pairs = (o: Record<string, string>, kind: string) =>
    Object.entries(o).map(([k, v]): [string, Part[]] => [k.toLowerCase(), compile(v, `${where}.${kind}.${k}`)]);
  return { set: pairs(r.set, 'set'), add: pairs(r.add, 'add'), remove: r.remove.map((h) => h.toLowerCase()) };
}

/** The value, or undefined when every variable in it was unknown and it came out empty. */
function render(parts: Part[], s: Source, keepEmpty: boolean): string | undefined {
  let out = '';
  let anyVar = false;
  for (const p of parts) {
    if (typeof p === 'string') out += p;
    else {
      anyVar = true;
      out += p(s) ?? '';
    }
  }
  return out === '' && anyVar && !keepEmpty ? undefined : out;
}

function apply(c: Compiled, target: HeaderMap, s: Source, keepEmpty: boolean): void {
  for (const h of c.remove) target.delete(h);
  for (const [h, parts] of c.set) {
    const v = render(parts, s, keepEmpty);
    if (v !== undefined) target.set(h, v);
  }
  for (const [h, parts] of c.add) {
    const v = render(parts, s, keepEmpty);
    if (v !== undefined) target.append(h, v);
  }
}

const HeaderName = Type.String({ minLength: 1, pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$" });
const RulesSchema = (what: string) => Type.Object(
  {
    set: Type.Record(Type.String(), Type.String(), { default: {}, description: `${what} headers to set (replacing every value)` }),
    add: Type.Record(Type.String(), Type.String(), { default: {}, description: `${what} headers to append` }),
    remove: Type.Array(HeaderName, { default: [], description: `${what} headers to remove` }),
  },
  { additionalProperties: false, default: {} },
);

export default defineFilter({
  name: 'headers',
  capabilities: [],
  config: Type.Object(
    {
      request: RulesSchema('Request'),
      response: RulesSchema('Response'),
      keepEmpty: Type.Boolean({ default: false, description: 'Add a header even when its value comes out empty.' }),
    },
    { additionalProperties: false },
  ),

  setup(config) {
    for (const side of ['request', 'response'] as const) {
      for (const name of [...Object.keys(config[side].set), ...Object.keys(config[side].add)]) {
        if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) throw new Error(`${side}: "${name}" is not a valid header name`);
        if (name.toLowerCase() === 'host' || name.startsWith(':')) throw new Error(`${side}: "${name}" cannot be changed by the headers filter`);
      }
      compiled[side] = compileRules(config[side], side);
    }
  },

  onRequest(req, ctx) {
    const c = compiled.request;
    if (c.set.length + c.add.length + c.remove.length === 0) return;
    apply(c, req.headers, { ctx, req }, ctx.config.keepEmpty);
  },

  onResponse(res, ctx) {
    const c = compiled.response;
    if (c.set.length + c.add.length + c.remove.length === 0) return;
    apply(c, res.headers, { ctx, req: ctx.request }, ctx.config.keepEmpty);
  },
});
