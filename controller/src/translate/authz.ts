/**
 * Istio `security.istio.io/v1` AuthorizationPolicy → the authz filter's policies.
 *
 * The filter has Istio's semantics (DENY first, default deny once an ALLOW applies, AUDIT
 * only logs), so supported fields map one to one. Fields it cannot enforce are reported
 * (an Event on the policy), never silently dropped, and handled the way ztunnel handles
 * rules it cannot enforce, always erring on the side of denying:
 * - in an ALLOW or AUDIT policy, a rule using one is left out (it can never allow);
 * - in a DENY policy, the unsupported condition is left out of its rule (it denies more).
 * A CUSTOM policy (external authorization) cannot be enforced: it becomes a DENY of every
 * request its rules would send to the provider, with a warning.
 *
 * Scope: the policy's namespace, its `selector.matchLabels` narrowing to workloads; in the
 * root namespace, every namespace. `targetRef(s)` (waypoints, gateways) are not supported.
 */

export interface AuthorizationPolicy {
  metadata: { name: string; namespace: string; uid?: string; generation?: number };
  spec?: {
    selector?: { matchLabels?: Record<string, string> };
    targetRef?: unknown;
    targetRefs?: unknown[];
    action?: string;
    provider?: unknown;
    rules?: Rule[];
  };
}

interface Rule {
  from?: { source?: Record<string, unknown> }[];
  to?: { operation?: Record<string, unknown> }[];
  when?: { key?: string; values?: string[]; notValues?: string[] }[];
  [k: string]: unknown;
}

export interface AuthzPolicyConfig {
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  rules: Record<string, unknown>[];
}

export interface MappedPolicy {
  /** Undefined when the policy applies to nothing it can say (e.g. only targetRefs). */
  policy: AuthzPolicyConfig | undefined;
  /** What was not supported and what was done about it, one line each. */
  unsupported: string[];
}

const SOURCE_FIELDS = new Set(['principals', 'notPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks']);
const OPERATION_FIELDS = new Set(['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']);
const WHEN_KEYS = /^(request\.headers\[[^\]]+\]|source\.principal|source\.namespace|source\.ip|destination\.port)$/;

export function mapAuthorizationPolicy(ap: AuthorizationPolicy): MappedPolicy {
  const spec = ap.spec ?? {};
  const unsupported: string[] = [];
  const name = `${ap.metadata.namespace}.${ap.metadata.name}`;
  if (spec.targetRef !== undefined || (spec.targetRefs?.length ?? 0) > 0) {
    unsupported.push('targetRef/targetRefs (waypoint or gateway policies): the policy is not applied; use selector');
    return { policy: undefined, unsupported };
  }
  let action = (spec.action ?? 'ALLOW').toUpperCase();
  if (action === 'CUSTOM') {
    unsupported.push('action CUSTOM (external authorization provider): enforced as DENY of the requests its rules match');
    action = 'DENY';
  } else if (action !== 'ALLOW' && action !== 'DENY' && action !== 'AUDIT') {
    unsupported.push(`action ${action}: the policy is enforced as DENY of every request`);
    return { policy: { name, action: 'DENY', rules: [{}] }, unsupported };
  }
  if (spec.provider !== undefined && action !== 'DENY') unsupported.push('provider: ignored');
  const deny = action === 'DENY';
  // Istio: an absent rules list matches nothing for ALLOW (denies all) — `rules: []`; DENY without rules denies nothing.
  const rules: Record<string, unknown>[] = [];
  (spec.rules ?? []).forEach((rule, i) => {
    const at = `rules[${i}]`;
    const dropped: string[] = [];
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(rule)) if (!['from', 'to', 'when'].includes(k)) dropped.push(`${at}.${k}`);
    if (rule.from) {
      out.from = rule.from.map((f, j) => {
        const source: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(f.source ?? {})) {
          if (SOURCE_FIELDS.has(k)) source[k] = v;
          else dropped.push(`${at}.from[${j}].source.${k}`);
        }
        return { source };
      });
    }
    if (rule.to) {
      out.to = rule.to.map((t, j) => {
        const operation: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(t.operation ?? {})) {
          if (OPERATION_FIELDS.has(k)) operation[k] = v;
          else dropped.push(`${at}.to[${j}].operation.${k}`);
        }
        return { operation };
      });
    }
    if (rule.when) {
      const when = rule.when.filter((c, j) => {
        if (c.key && WHEN_KEYS.test(c.key)) return true;
        dropped.push(`${at}.when[${j}] key ${c.key ?? '(none)'}`);
        return false;
      });
      if (when.length > 0) out.when = when.map((c) => ({ key: c.key, ...(c.values ? { values: c.values } : {}), ...(c.notValues ? { notValues: c.notValues } : {}) }));
    }
    if (dropped.length === 0) {
      rules.push(out);
    } else if (deny) {
      unsupported.push(`${dropped.join(', ')}: not supported; left out of the DENY rule, which therefore denies more`);
      rules.push(out);
    } else {
      unsupported.push(`${dropped.join(', ')}: not supported; ${at} is left out of the ${action} policy (it allows nothing)`);
    }
  });
  return { policy: { name, action: action as AuthzPolicyConfig['action'], rules }, unsupported };
}
