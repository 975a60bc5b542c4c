import { Type, counter, defineFilter, deny, log } from '@ambit/filter-sdk';
import type { ConnectionInfo, FilterContext, Peer } from '@ambit/filter-sdk';

/**
 * mTLS policy, enforced at L4 (connection phase only: no HTTP is parsed).
 *
 * - `mode` STRICT refuses a connection that is not mutual TLS (no TLS, or TLS without
 *   a proven peer identity); PERMISSIVE lets it through as unauthenticated.
 * - `overrides` set the mode per namespace or workload; the most specific one wins.
 *   They match the LOCAL workload of the connection: the destination for inbound
 *   traffic, the source for outbound traffic.
 * - `allowedTrustDomains` (non-empty) refuses a peer identity from another trust domain.
 * - `requireTls13` refuses a TLS session that is not TLSv1.3.
 */

const Mode = (options: { default?: string } = {}) => Type.Union([Type.Literal('STRICT'), Type.Literal('PERMISSIVE')], options);

type ModeName = 'STRICT' | 'PERMISSIVE';

interface Override {
  namespace?: string;
  workload?: string;
  mode: ModeName;
}

interface Config {
  mode: ModeName;
  overrides: Override[];
  allowedTrustDomains: string[];
  requireTls13: boolean;
}

/** The local workload the policy is about: the server for inbound, the client for outbound. */
function localPeer(ctx: FilterContext<Config>): Peer {
  return ctx.direction === 'inbound' ? ctx.destination : ctx.source;
}

/** The remote end, whose mTLS identity is checked: the client for inbound, the server for outbound. */
function remotePeer(ctx: FilterContext<Config>): Peer {
  return ctx.direction === 'inbound' ? ctx.source : ctx.destination;
}

/**
 * Specificity of an override for `peer`, or 0 when it does not match:
 * namespace + workload = 3, workload only = 2, namespace only = 1.
 */
function specificity(o: Override, peer: Peer): number {
  if (o.namespace !== undefined && o.namespace !== peer.namespace) return 0;
  if (o.workload !== undefined && o.workload !== peer.workload) return 0;
  if (o.workload !== undefined) return o.namespace !== undefined ? 3 : 2;
  return o.namespace !== undefined ? 1 : 0;
}

/** The mode for `peer`: the most specific matching override (first listed on a tie), else `mode`. */
function modeFor(config: Config, peer: Peer): { mode: ModeName; from: string } {
  let best: Override | undefined;
  let bestScore = 0;
  for (const o of config.overrides) {
    const s = specificity(o, peer);
    if (s > bestScore) {
      best = o;
      bestScore = s;
    }
  }
  if (!best) return { mode: config.mode, from: 'default' };
  const what = [best.namespace !== undefined ? `namespace ${best.namespace}` : '', best.workload !== undefined ? `workload ${best.workload}` : '']
    .filter(Boolean)
    .join(', ');
  return { mode: best.mode, from: `override ${what}` };
}

/** The trust domain of a SPIFFE ID (`spiffe://<td>/...`), lower-cased, or undefined if it is not one. */
function trustDomainOf(identity: string): string | undefined {
  const m = /^spiffe:\/\/([^/?#]+)(\/|$)/i.exec(identity);
  return m ? m[1]!.toLowerCase() : undefined;
}

/** `<ns>/<workload>` when known, else the address and port. */
function describe(peer: Peer): string {
  if (peer.workload !== undefined) return `${peer.namespace ?? '?'}/${peer.workload}`;
  if (peer.namespace !== undefined) return `${peer.namespace}/${peer.address}:${peer.port}`;
  return `${peer.address}:${peer.port}`;
}

/** Counts, logs (with `detail`, if any) and denies. */
function refuse(name: string, reason: string, detail?: string) {
  counter(name);
  log.info(detail ? `${reason}; ${detail}` : reason);
  return deny(reason);
}

export default defineFilter({
  name: 'mtls',
  capabilities: ['log', 'counters'],
  config: Type.Object(
    {
      mode: Mode({ default: 'STRICT' }),
      overrides: Type.Array(
        Type.Object(
          {
            namespace: Type.Optional(Type.String({ minLength: 1 })),
            workload: Type.Optional(Type.String({ minLength: 1 })),
            mode: Mode(),
          },
          { additionalProperties: false },
        ),
        { default: [] },
      ),
      allowedTrustDomains: Type.Array(Type.String({ pattern: '^[a-z0-9._-]+$' }), { default: [] }),
      requireTls13: Type.Boolean({ default: true }),
    },
    { additionalProperties: false },
  ),

  setup(config) {
    config.overrides.forEach((o, i) => {
      if (o.namespace === undefined && o.workload === undefined) {
        throw new Error(`overrides/${i}: needs a namespace, a workload or both`);
      }
    });
  },

  onConnection(conn: ConnectionInfo, ctx) {
    const to = describe(ctx.destination);
    const from = ctx.source.address;

    // 1. A TLS session must be TLS 1.3 (whatever the mode).
    if (conn.tls && ctx.config.requireTls13 && conn.tls.version !== 'TLSv1.3') {
      return refuse('denied_tls_version', `mtls: ${conn.tls.version} connection to ${to} refused: TLSv1.3 required (from ${from})`);
    }

    const local = localPeer(ctx);
    const { mode, from: modeSource } = modeFor(ctx.config, local);
    const remote = remotePeer(ctx);
    // An identity counts only when proven by mTLS: with no TLS session it is absent.
    const identity = conn.tls ? remote.identity : undefined;

    // 2. Not mutual TLS: STRICT refuses, PERMISSIVE lets it through unauthenticated.
    if (identity === undefined) {
      if (mode === 'STRICT') {
        const what = conn.tls ? 'unauthenticated connection (TLS without a peer identity)' : 'plaintext connection';
        return refuse(
          conn.tls ? 'denied_no_identity' : 'denied_plaintext',
          `mtls: ${what} to ${to} refused: STRICT mTLS (from ${from})`,
          `mode STRICT from ${modeSource}`,
        );
      }
      counter(conn.tls ? 'allowed_unauthenticated' : 'allowed_plaintext');
      return;
    }

    // 3. A proven identity must come from an allowed trust domain.
    if (ctx.config.allowedTrustDomains.length > 0) {
      const td = trustDomainOf(identity);
      if (td === undefined || !ctx.config.allowedTrustDomains.includes(td)) {
        const which = td === undefined ? `identity ${identity} is not a SPIFFE ID` : `trust domain ${td} of ${identity} is not allowed`;
        return refuse(
          'denied_trust_domain',
          `mtls: connection to ${to} refused: ${which} (allowed: ${ctx.config.allowedTrustDomains.join(', ')}; from ${from})`,
        );
      }
    }

    counter('allowed_mtls');
  },
});
