import { Type, counter, defineFilter, deny, log, respond } from '@ambit/filter-sdk';
import type { FilterContext, HttpRequest, Peer } from '@ambit/filter-sdk';

/**
 * Authorization with the semantics of Istio's `AuthorizationPolicy`:
 *
 * - `policies[]`: `{ name, action: ALLOW | DENY | AUDIT, rules[] }`. A rule matches when
 *   one of its `from` sources, one of its `to` operations and every `when` condition
 *   match (an absent list matches anything). A policy matches when one of its rules
 *   does; `rules: []` never matches (an ALLOW policy with no rules denies everything,
 *   `rules: [{}]` allows everything).
 * - DENY is evaluated first: a matching DENY policy refuses. Then, if any ALLOW policy
 *   exists, a request that matches none is refused (default deny). AUDIT policies
 *   never decide; a match is logged and counted.
 * - Sources: `principals` (SPIFFE IDs, `spiffe://` optional, Istio's
 *   `cluster.local/ns/x/sa/y` form), `namespaces` (from the peer's identity),
 *   `ipBlocks` (CIDR); operations: `methods`, `paths`, `ports`, `hosts`; `when`: keys
 *   `request.headers[<name>]`, `source.principal`, `source.namespace`, `source.ip`,
 *   `destination.port`. Every list has its `not…` negation. Strings match exactly, by
 *   prefix (`abc*`), by suffix (`*abc`) or for presence (`*`).
 * - L4: a policy whose rules use only principals, namespaces, IP blocks and ports (and
 *   such `when` keys) is decided at the connection phase too, before any byte is parsed,
 *   so it holds for non-HTTP traffic (like ztunnel). At L4 a connection is refused by a
 *   matching L4 DENY policy, or when every ALLOW policy is L4 and none matches.
 * - A refused request gets `403` with a body naming the policy; a refused connection is
 *   closed, the policy named in the access log.
 */

type Action = 'ALLOW' | 'DENY' | 'AUDIT';

interface SourceCfg {
  principals?: string[]; notPrincipals?: string[];
  namespaces?: string[]; notNamespaces?: string[];
  ipBlocks?: string[]; notIpBlocks?: string[];
}
interface OperationCfg {
  methods?: string[]; notMethods?: string[];
  paths?: string[]; notPaths?: string[];
  ports?: Array<string | number>; notPorts?: Array<string | number>;
  hosts?: string[]; notHosts?: string[];
}
interface ConditionCfg { key: string; values?: string[]; notValues?: string[] }
interface RuleCfg { from?: Array<{ source: SourceCfg }>; to?: Array<{ operation: OperationCfg }>; when?: ConditionCfg[] }
interface PolicyCfg { name: string; action: Action; rules: RuleCfg[] }
interface Config { policies: PolicyCfg[] }

/** What a rule can look at; HTTP facts are absent at the connection phase. */
interface Facts {
  principal: string | undefined;
  namespace: string | undefined;
  ip: string;
  port: number;
  http?: { method: string; path: string; host: string; headers: HttpRequest['headers'] };
}

type Test = (f: Facts) => boolean;

interface Policy {
  name: string;
  action: Action;
  /** Decidable without HTTP. */
  l4: boolean;
  matches: Test;
  /** The counter an ALLOW match adds to. */
  allowedCounter: string;
}

// ---------------------------------------------------------------------------------------
// Matchers

/** Istio's string match: exact, `prefix*`, `*suffix`, or `*` (present). */
function stringMatcher(pattern: string, fold = false): (v: string) => boolean {
  const p = fold ? pattern.toLowerCase() : pattern;
  const norm = (v: string) => (fold ? v.toLowerCase() : v);
  if (p === '*') return () => true;
  if (p.endsWith('*')) { const pre = p.slice(0, -1); return (v) => norm(v).startsWith(pre); }
  if (p.startsWith('*')) { const suf = p.slice(1); return (v) => norm(v).endsWith(suf); }
  return (v) => norm(v) === p;
}

function anyOf(patterns: string[], fold = false): (v: string | undefined) => boolean {
  const ms = patterns.map((p) => stringMatcher(p, fold));
  return (v) => v !== undefined && ms.some((m) => m(v));
}

/** `spiffe://td/ns/x/sa/y` and `td/ns/x/sa/y` are the same principal. */
const stripSpiffe = (s: string) => (s.startsWith('spiffe://') ? s.slice(9) : s);

function parseIpv4(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out.push(Number(p));
  }
  return out;
}

function parseIpv6(s: string): number[] | undefined {
  let str = s;
  let tail: number[] = [];
  const lastColon = str.lastIndexOf(':');
  if (str.includes('.') && lastColon >= 0) {
    const v4 = parseIpv4(str.slice(lastColon + 1));
    if (!v4) return undefined;
    tail = v4;
    str = `${str.slice(0, lastColon + 1)}0:0`;
  }
  const halves = str.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return undefined;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  const bytes: number[] = [];
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = parseInt(g, 16);
    bytes.push(n >> 8, n & 0xff);
  }
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** Bytes of an address; IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4. */
function ipBytes(s: string): number[] | undefined {
  const v4 = parseIpv4(s);
  if (v4) return v4;
  const v6 = parseIpv6(s);
  if (v6 && v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return v6.slice(12);
  return v6;
}

function cidrMatcher(block: string, where: string): (ip: string) => boolean {
  const [addr, len] = block.split('/');
  const bytes = ipBytes(addr!);
  if (!bytes) throw new Error(`${where}: "${block}" is not an IP address or CIDR block`);
  const bits = len === undefined ? bytes.length * 8 : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > bytes.length * 8) throw new Error(`${where}: "${block}" has an invalid prefix length`);
  return (ip) => {
    const b = ipBytes(ip);
    if (!b || b.length !== bytes.length) return false;
    for (let i = 0; i < bits; i++) {
      const mask = 0x80 >> (i % 8);
      if ((b[i >> 3]! & mask) !== (bytes[i >> 3]! & mask)) return false;
    }
    return true;
  };
}

function portsOf(list: Array<string | number>, where: string): Set<number> {
  return new Set(list.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${where}: "${p}" is not a port`);
    return n;
  }));
}

/** The namespace of a SPIFFE principal (`…/ns/<ns>/sa/…`). */
function namespaceOf(principal: string | undefined): string | undefined {
  if (!principal) return undefined;
  const m = /\/ns\/([^/]+)\//.exec(`${principal}/`);
  return m ? m[1] : undefined;
}

/** Combines a positive and a negative list into one test (absent lists match). */
function pair<T>(pos: ((v: T) => boolean) | undefined, neg: ((v: T) => boolean) | undefined): (v: T) => boolean {
  return (v) => (pos ? pos(v) : true) && (neg ? !neg(v) : true);
}

function compileSource(s: SourceCfg, where: string): Test {
  const principals = pair(
    s.principals && anyOf(s.principals.map(stripSpiffe)),
    s.notPrincipals && anyOf(s.notPrincipals.map(stripSpiffe)),
  );
  const namespaces = pair(s.namespaces && anyOf(s.namespaces), s.notNamespaces && anyOf(s.notNamespaces));
  const blocks = (list: string[], w: string) => { const ms = list.map((b) => cidrMatcher(b, w)); return (ip: string) => ms.some((m) => m(ip)); };
  const ips = pair(s.ipBlocks && blocks(s.ipBlocks, `${where}.ipBlocks`), s.notIpBlocks && blocks(s.notIpBlocks, `${where}.notIpBlocks`));
  return (f) => principals(f.principal) && namespaces(f.namespace) && ips(f.ip);
}

/** Whether an operation uses HTTP fields. */
const operationIsL7 = (o: OperationCfg) =>
  [o.methods, o.notMethods, o.paths, o.notPaths, o.hosts, o.notHosts].some((l) => l !== undefined);

function compileOperation(o: OperationCfg, where: string): Test {
  const methods = pair(o.methods && anyOf(o.methods.map((m) => m.toUpperCase())), o.notMethods && anyOf(o.notMethods.map((m) => m.toUpperCase())));
  const paths = pair(o.paths && anyOf(o.paths), o.notPaths && anyOf(o.notPaths));
  const hostTest = (list: string[]) => { const m = anyOf(list, true); return (h: string) => m(h) || m(h.replace(/:\d+$/, '')); };
  const hosts = pair(o.hosts && hostTest(o.hosts), o.notHosts && hostTest(o.notHosts));
  const ports = o.ports && portsOf(o.ports, `${where}.ports`);
  const notPorts = o.notPorts && portsOf(o.notPorts, `${where}.notPorts`);
  const l7 = operationIsL7(o);
  return (f) => {
    if (ports && !ports.has(f.port)) return false;
    if (notPorts && notPorts.has(f.port)) return false;
    if (!l7) return true;
    if (!f.http) return false;
    const q = f.http.path.indexOf('?');
    const path = q < 0 ? f.http.path : f.http.path.slice(0, q);
    return methods(f.http.method.toUpperCase()) && paths(path) && hosts(f.http.host);
  };
}

const L4_KEYS = new Set(['source.principal', 'source.namespace', 'source.ip', 'destination.port']);

function compileCondition(c: ConditionCfg, where: string): Test {
  if (c.values === undefined && c.notValues === undefined) throw new Error(`${where}: a condition needs values or notValues`);
  if (c.key === 'source.ip') {
    const pos = c.values?.map((b) => cidrMatcher(b, `${where}.values`));
    const neg = c.notValues?.map((b) => cidrMatcher(b, `${where}.notValues`));
    return (f) => (!pos || pos.some((m) => m(f.ip))) && (!neg || !neg.some((m) => m(f.ip)));
  }
  const header = /^request\.headers\[([^\]]+)\]$/.exec(c.key);
  let get: (f: Facts) => string | undefined;
  let norm = (v: string) => v;
  if (header) { const h = header[1]!.toLowerCase(); get = (f) => f.http?.headers.get(h); }
  else if (c.key === 'source.principal') { get = (f) => f.principal; norm = stripSpiffe; }
  else if (c.key === 'source.namespace') get = (f) => f.namespace;
  else if (c.key === 'destination.port') get = (f) => String(f.port);
  else throw new Error(`${where}: unknown key "${c.key}"; known: request.headers[<name>], ${[...L4_KEYS].join(', ')}`);
  const test = pair(c.values && anyOf(c.values.map(norm)), c.notValues && anyOf(c.notValues.map(norm)));
  // An absent value (no such header, no identity) does not match, negated or not (Istio).
  return (f) => { const v = get(f); return v !== undefined && test(v); };
}

function compileRule(r: RuleCfg, where: string): { test: Test; l4: boolean } {
  const from = r.from?.map((s, i) => compileSource(s.source ?? {}, `${where}.from[${i}].source`));
  const to = r.to?.map((o, i) => compileOperation(o.operation ?? {}, `${where}.to[${i}].operation`));
  const when = r.when?.map((c, i) => compileCondition(c, `${where}.when[${i}]`));
  const l4 = !(r.to ?? []).some((o) => operationIsL7(o.operation ?? {})) && (r.when ?? []).every((c) => L4_KEYS.has(c.key));
  return {
    l4,
    test: (f) => (!from || from.some((t) => t(f))) && (!to || to.some((t) => t(f))) && (!when || when.every((t) => t(f))),
  };
}

function compilePolicy(p: PolicyCfg, i: number): Policy {
  const rules = p.rules.map((r, j) => compileRule(r, `policies[${i}] (${p.name}).rules[${j}]`));
  return { name: p.name, action: p.action, l4: rules.every((r) => r.l4), matches: (f) => rules.some((r) => r.test(f)), allowedCounter: `allowed_${p.name}` };
}

// ---------------------------------------------------------------------------------------
// Decisions

let policies: Policy[] = [];
let denies: Policy[] = [];
let allows: Policy[] = [];
let audits: Policy[] = [];
let allAllowsL4 = true;

/**
 * The source's facts, worked out once per peer: the host hands the same (frozen) peer
 * object to every call that sees the same client, so the principal and its namespace
 * are parsed on its first request only.
 */
const sourceFacts = new WeakMap<Peer, { principal: string | undefined; namespace: string | undefined }>();

function factsOf(ctx: FilterContext<Config>, http?: Facts['http']): Facts {
  const source = ctx.source;
  let s = sourceFacts.get(source);
  if (s === undefined) {
    const principal = source.identity !== undefined ? stripSpiffe(source.identity) : undefined;
    s = { principal, namespace: namespaceOf(principal) };
    sourceFacts.set(source, s);
  }
  return { principal: s.principal, namespace: s.namespace, ip: source.address, port: ctx.destination.port, http };
}

function who(f: Facts): string {
  return f.principal ? `spiffe://${f.principal}` : `${f.ip} (no identity)`;
}

function audit(f: Facts, l4Only: boolean, what: () => string): void {
  for (const p of audits) {
    if (l4Only && !p.l4) continue;
    if (p.matches(f)) {
      counter(`audit_${p.name}`);
      log.info(`authz AUDIT policy ${p.name}: ${what()} from ${who(f)}`);
    }
  }
}

/** A list of a rule field or of its `not…` form: names, paths, CIDRs… */
const nameList = () => Type.Optional(Type.Array(Type.String({ minLength: 1 })));
/** A list of ports: numbers, or strings as Istio writes them. */
const portList = () => Type.Optional(Type.Array(Type.Union([Type.String({ minLength: 1 }), Type.Integer({ minimum: 1, maximum: 65535 })])));

export default defineFilter({
  name: 'authz',
  capabilities: ['log', 'counters'],
  config: Type.Object(
    {
      policies: Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1, description: 'Shown in the 403 body, the access log and counters.' }),
            action: Type.Union([Type.Literal('ALLOW'), Type.Literal('DENY'), Type.Literal('AUDIT')], { default: 'ALLOW' }),
            rules: Type.Array(
              Type.Object(
                {
                  from: Type.Optional(Type.Array(Type.Object({
                    source: Type.Object({
                      principals: nameList(),
                      notPrincipals: nameList(),
                      namespaces: nameList(),
                      notNamespaces: nameList(),
                      ipBlocks: nameList(),
                      notIpBlocks: nameList(),
                    }, { additionalProperties: false }),
                  }, { additionalProperties: false }))),
                  to: Type.Optional(Type.Array(Type.Object({
                    operation: Type.Object({
                      methods: nameList(),
                      notMethods: nameList(),
                      paths: nameList(),
                      notPaths: nameList(),
                      ports: portList(),
                      notPorts: portList(),
                      hosts: nameList(),
                      notHosts: nameList(),
                    }, { additionalProperties: false }),
                  }, { additionalProperties: false }))),
                  when: Type.Optional(Type.Array(Type.Object({
                    key: Type.String({ minLength: 1, description: 'request.headers[<name>], source.principal, source.namespace, source.ip, destination.port' }),
                    values: Type.Optional(Type.Array(Type.String())),
                    notValues: Type.Optional(Type.Array(Type.String())),
                  }, { additionalProperties: false }))),
                },
                { additionalProperties: false },
              ),
              { default: [] },
            ),
          },
          { additionalProperties: false },
        ),
        { default: [] },
      ),
    },
    { additionalProperties: false },
  ),

  setup(config: Config) {
    const names = new Set<string>();
    for (const p of config.policies) {
      if (names.has(p.name)) throw new Error(`policy ${p.name} is defined twice`);
      names.add(p.name);
    }
    policies = config.policies.map(compilePolicy);
    denies = policies.filter((p) => p.action === 'DENY');
    allows = policies.filter((p) => p.action === 'ALLOW');
    audits = policies.filter((p) => p.action === 'AUDIT');
    allAllowsL4 = allows.every((p) => p.l4);
  },

  onConnection(_conn, ctx) {
    const f = factsOf(ctx);
    const to = `${ctx.destination.address}:${ctx.destination.port}`;
    for (const p of denies) {
      if (p.l4 && p.matches(f)) {
        counter(`denied_${p.name}`);
        return deny(`authz: connection to ${to} from ${who(f)} denied by DENY policy ${p.name}`);
      }
    }
    if (allows.length > 0 && allAllowsL4 && !allows.some((p) => p.matches(f))) {
      counter('denied_default');
      return deny(`authz: connection to ${to} from ${who(f)} denied: no ALLOW policy matched (${allows.map((p) => p.name).join(', ')})`);
    }
    audit(f, true, () => `connection to ${to}`);
  },

  onRequest(req, ctx) {
    const http = { method: req.method, path: req.path, host: req.authority, headers: req.headers };
    const f = factsOf(ctx, http);
    const what = () => `${http.method} ${http.host}${http.path}`;
    for (const p of denies) {
      if (p.matches(f)) {
        counter(`denied_${p.name}`);
        log.info(`authz: ${what()} from ${who(f)} denied by DENY policy ${p.name}`);
        return respond(403, `RBAC: access denied by policy ${p.name}\n`, { 'content-type': 'text/plain', 'x-ambit-authz-policy': p.name });
      }
    }
    if (allows.length > 0) {
      const allowed = allows.find((p) => p.matches(f));
      if (!allowed) {
        counter('denied_default');
        log.info(`authz: ${what()} from ${who(f)} denied: no ALLOW policy matched`);
        const names = allows.map((p) => p.name).join(', ');
        return respond(403, `RBAC: access denied: no ALLOW policy matched (policies: ${names})\n`, { 'content-type': 'text/plain', 'x-ambit-authz-policy': names });
      }
      counter(allowed.allowedCounter);
    }
    audit(f, false, what);
  },
});
