/**
 * The mTLS policy filter, built from this package with the real SDK CLI and run in
 * the in-process harness.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { AmbitError } from '@ambit/filter-sdk/host';
import { loadFilter, type ConnectionInput, type ConnectionResult, type TestFilter } from '@ambit/filter-sdk/testing';

const here = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(here, '..');
const REPO = path.resolve(PKG, '../..');
const CLI = path.join(REPO, 'sdk/dist/build/cli.js');

const TD = 'cluster.local';
const WEB = `spiffe://${TD}/ns/shop/sa/web`;
const TLS13 = { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'api.shop' };

/** Inbound: a client (source) connects to a local workload (destination). */
function inbound(dest: { namespace?: string; workload?: string }, opts: { identity?: string; tls?: ConnectionInput['tls'] } = {}): ConnectionInput {
  return {
    direction: 'inbound',
    source: { identity: opts.identity, workload: 'web', namespace: 'shop', address: '10.1.0.5', port: 40123 },
    destination: { ...dest, address: '10.2.0.9', port: 8080 },
    tls: opts.tls,
  };
}

/** An mTLS inbound connection from `identity`. */
const mtls = (dest: { namespace?: string; workload?: string }, identity = WEB) => inbound(dest, { identity, tls: TLS13 });
const plain = (dest: { namespace?: string; workload?: string }) => inbound(dest);

const ALLOW: ConnectionResult = { action: 'allow' };
const plaintextDeny = (to: string, from = '10.1.0.5'): ConnectionResult => ({
  action: 'deny',
  reason: `mtls: plaintext connection to ${to} refused: STRICT mTLS (from ${from})`,
});

async function rejection(p: Promise<unknown>): Promise<AmbitError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AmbitError);
    return e as AmbitError;
  }
  throw new Error('expected a rejection');
}

beforeAll(async () => {
  await promisify(execFile)(process.execPath, [CLI, 'build', PKG], { cwd: REPO, maxBuffer: 16 * 2 ** 20 });
});

describe('mtls filter: package and defaults', () => {
  let f: TestFilter;
  beforeAll(async () => {
    f = await loadFilter(PKG);
  });

  it('implements the connection phase only, with log and counters', () => {
    expect(f.name).toBe('mtls');
    expect(f.phases.connection).toBe(true);
    expect(f.phases.requestHeaders).toBe(false);
    expect(f.phases.responseHeaders).toBe(false);
    expect(f.manifest?.phases).toEqual(['connection']);
    expect(f.manifest?.capabilities).toEqual(['log', 'counters']);
  });

  it('defaults to STRICT: refuses plaintext with a clear reason, logs and counts it', () => {
    expect(f.connection(plain({ namespace: 'shop', workload: 'api' }))).toEqual(plaintextDeny('shop/api'));
    expect(f.counters.get('denied_plaintext')).toBe(1);
    expect(f.logs.at(-1)).toEqual({
      level: 'info',
      message: 'mtls: plaintext connection to shop/api refused: STRICT mTLS (from 10.1.0.5); mode STRICT from default',
    });
  });

  it('names the destination by address when its workload is unknown', () => {
    expect(f.connection({ source: { address: '192.0.2.7' }, destination: { address: '10.2.0.9', port: 9000 } })).toEqual(
      plaintextDeny('10.2.0.9:9000', '192.0.2.7'),
    );
  });

  it('allows mTLS with TLS 1.3 and an identity from any trust domain', () => {
    expect(f.connection(mtls({ namespace: 'shop', workload: 'api' }))).toEqual(ALLOW);
    expect(f.connection(mtls({ namespace: 'shop', workload: 'api' }, 'spiffe://other.example/ns/x/sa/y'))).toEqual(ALLOW);
    expect(f.counters.get('allowed_mtls')).toBe(2);
  });

  it('refuses TLS without a peer identity in STRICT', () => {
    expect(f.connection(inbound({ namespace: 'shop', workload: 'api' }, { tls: TLS13 }))).toEqual({
      action: 'deny',
      reason: 'mtls: unauthenticated connection (TLS without a peer identity) to shop/api refused: STRICT mTLS (from 10.1.0.5)',
    });
    expect(f.counters.get('denied_no_identity')).toBe(1);
  });

  it('ignores an identity claimed on a plaintext connection (it was not proven by mTLS)', () => {
    expect(f.connection(inbound({ namespace: 'shop', workload: 'api' }, { identity: WEB }))).toEqual(plaintextDeny('shop/api'));
  });

  it('refuses TLS 1.2 by default, logging and counting it', () => {
    const r = f.connection(mtls({ namespace: 'shop', workload: 'api' }, WEB));
    expect(r).toEqual(ALLOW);
    const old = f.connection(inbound({ namespace: 'shop', workload: 'api' }, { identity: WEB, tls: { version: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' } }));
    expect(old).toEqual({ action: 'deny', reason: 'mtls: TLSv1.2 connection to shop/api refused: TLSv1.3 required (from 10.1.0.5)' });
    expect(f.counters.get('denied_tls_version')).toBe(1);
    expect(f.logs.at(-1)).toEqual({ level: 'info', message: 'mtls: TLSv1.2 connection to shop/api refused: TLSv1.3 required (from 10.1.0.5)' });
  });

  it('has logged one line per denial and counted every decision', () => {
    expect(f.logs.every((l) => l.level === 'info' && l.message.startsWith('mtls: '))).toBe(true);
    const denied = [...f.counters].filter(([k]) => k.startsWith('denied_')).reduce((n, [, v]) => n + v, 0);
    expect(f.logs.length).toBe(denied);
    expect([...f.counters.keys()].sort()).toEqual(['allowed_mtls', 'denied_no_identity', 'denied_plaintext', 'denied_tls_version']);
  });
});

describe('mtls filter: modes, overrides and trust domains', () => {
  type Case = { name: string; config: Record<string, unknown>; input: ConnectionInput; want: ConnectionResult | RegExp };

  const overrides = [
    { namespace: 'legacy', mode: 'PERMISSIVE' },
    { namespace: 'legacy', workload: 'billing', mode: 'STRICT' },
    { workload: 'metrics', mode: 'PERMISSIVE' },
  ];

  const cases: Case[] = [
    { name: 'STRICT plaintext → deny', config: { mode: 'STRICT' }, input: plain({ namespace: 'shop', workload: 'api' }), want: plaintextDeny('shop/api') },
    { name: 'STRICT mTLS → allow', config: { mode: 'STRICT' }, input: mtls({ namespace: 'shop', workload: 'api' }), want: ALLOW },
    { name: 'PERMISSIVE plaintext → allow', config: { mode: 'PERMISSIVE' }, input: plain({ namespace: 'shop', workload: 'api' }), want: ALLOW },
    { name: 'PERMISSIVE mTLS → allow', config: { mode: 'PERMISSIVE' }, input: mtls({ namespace: 'shop', workload: 'api' }), want: ALLOW },
    { name: 'PERMISSIVE TLS without identity → allow', config: { mode: 'PERMISSIVE' }, input: inbound({ namespace: 'shop' }, { tls: TLS13 }), want: ALLOW },
    {
      name: 'PERMISSIVE still refuses TLS 1.2',
      config: { mode: 'PERMISSIVE' },
      input: inbound({ namespace: 'shop', workload: 'api' }, { identity: WEB, tls: { version: 'TLSv1.2' } }),
      want: /^mtls: TLSv1\.2 connection to shop\/api refused: TLSv1\.3 required/,
    },
    {
      name: 'requireTls13: false accepts TLS 1.2',
      config: { requireTls13: false },
      input: inbound({ namespace: 'shop', workload: 'api' }, { identity: WEB, tls: { version: 'TLSv1.2' } }),
      want: ALLOW,
    },
    { name: 'namespace override PERMISSIVE (STRICT default) → plaintext allowed', config: { overrides }, input: plain({ namespace: 'legacy', workload: 'reports' }), want: ALLOW },
    { name: 'other namespace keeps the STRICT default', config: { overrides }, input: plain({ namespace: 'shop', workload: 'reports' }), want: plaintextDeny('shop/reports') },
    { name: 'workload override beats namespace override', config: { overrides }, input: plain({ namespace: 'legacy', workload: 'billing' }), want: plaintextDeny('legacy/billing') },
    { name: 'workload-only override matches in any namespace', config: { overrides }, input: plain({ namespace: 'shop', workload: 'metrics' }), want: ALLOW },
    {
      name: 'namespace override STRICT beats a PERMISSIVE default',
      config: { mode: 'PERMISSIVE', overrides: [{ namespace: 'pci', mode: 'STRICT' }] },
      input: plain({ namespace: 'pci', workload: 'vault' }),
      want: plaintextDeny('pci/vault'),
    },
    {
      name: 'workload override PERMISSIVE beats namespace STRICT, whatever the order',
      config: { mode: 'PERMISSIVE', overrides: [{ namespace: 'pci', workload: 'probe', mode: 'PERMISSIVE' }, { namespace: 'pci', mode: 'STRICT' }] },
      input: plain({ namespace: 'pci', workload: 'probe' }),
      want: ALLOW,
    },
    {
      name: 'inbound matches the DESTINATION (source namespace is not considered)',
      config: { overrides: [{ namespace: 'legacy', mode: 'PERMISSIVE' }] },
      input: { direction: 'inbound', source: { namespace: 'legacy', workload: 'old', address: '10.1.0.5' }, destination: { namespace: 'shop', workload: 'api', address: '10.2.0.9' } },
      want: plaintextDeny('shop/api'),
    },
    {
      name: 'inbound to an overridden destination',
      config: { overrides: [{ namespace: 'legacy', mode: 'PERMISSIVE' }] },
      input: { direction: 'inbound', source: { namespace: 'shop', workload: 'api', address: '10.1.0.5' }, destination: { namespace: 'legacy', workload: 'old', address: '10.2.0.9' } },
      want: ALLOW,
    },
    {
      name: 'outbound matches the SOURCE (the local client)',
      config: { overrides: [{ namespace: 'legacy', mode: 'PERMISSIVE' }] },
      input: { direction: 'outbound', source: { namespace: 'legacy', workload: 'old', address: '10.1.0.5' }, destination: { namespace: 'shop', workload: 'api', address: '10.2.0.9' } },
      want: ALLOW,
    },
    {
      name: 'outbound to an overridden destination keeps the source\'s STRICT',
      config: { overrides: [{ namespace: 'legacy', mode: 'PERMISSIVE' }] },
      input: { direction: 'outbound', source: { namespace: 'shop', workload: 'api', address: '10.1.0.5' }, destination: { namespace: 'legacy', workload: 'old', address: '10.2.0.9' } },
      want: plaintextDeny('legacy/old'),
    },
    {
      name: 'outbound checks the destination\'s (server) identity',
      config: { allowedTrustDomains: [TD] },
      input: {
        direction: 'outbound',
        source: { namespace: 'shop', workload: 'web', address: '10.1.0.5' },
        destination: { namespace: 'shop', workload: 'api', address: '10.2.0.9', identity: 'spiffe://evil.example/ns/shop/sa/api' },
        tls: TLS13,
      },
      want: /trust domain evil\.example of spiffe:\/\/evil\.example\/ns\/shop\/sa\/api is not allowed/,
    },
    { name: 'allowed trust domain → allow', config: { allowedTrustDomains: ['other.example', TD] }, input: mtls({ namespace: 'shop', workload: 'api' }), want: ALLOW },
    {
      name: 'trust domain outside the allow-list → deny naming it',
      config: { allowedTrustDomains: [TD] },
      input: mtls({ namespace: 'shop', workload: 'api' }, 'spiffe://partner.example/ns/shop/sa/web'),
      want: {
        action: 'deny',
        reason: 'mtls: connection to shop/api refused: trust domain partner.example of spiffe://partner.example/ns/shop/sa/web is not allowed (allowed: cluster.local; from 10.1.0.5)',
      },
    },
    {
      name: 'trust domains compare case-insensitively',
      config: { allowedTrustDomains: [TD] },
      input: mtls({ namespace: 'shop', workload: 'api' }, 'spiffe://Cluster.Local/ns/shop/sa/web'),
      want: ALLOW,
    },
    {
      name: 'an identity that is not a SPIFFE ID is refused when trust domains are restricted',
      config: { allowedTrustDomains: [TD] },
      input: mtls({ namespace: 'shop', workload: 'api' }, 'web.shop.svc'),
      want: /identity web\.shop\.svc is not a SPIFFE ID/,
    },
    { name: 'PERMISSIVE plaintext skips the trust-domain check (no identity)', config: { mode: 'PERMISSIVE', allowedTrustDomains: [TD] }, input: plain({ namespace: 'shop' }), want: ALLOW },
  ];

  it.each(cases)('$name', async ({ config, input, want }) => {
    const f = await loadFilter(PKG, { config });
    const r = f.connection(input);
    if (want instanceof RegExp) {
      expect(r.action).toBe('deny');
      expect(r.action === 'deny' && r.reason).toMatch(want);
    } else {
      expect(r).toEqual(want);
    }
    // Every denial is logged once and counted once; an allow logs nothing.
    const deniedCount = [...f.counters].filter(([k]) => k.startsWith('denied_')).reduce((n, [, v]) => n + v, 0);
    expect(deniedCount).toBe(r.action === 'deny' ? 1 : 0);
    expect(f.logs.length).toBe(r.action === 'deny' ? 1 : 0);
  });

  it('counts plaintext let through by PERMISSIVE separately', async () => {
    const f = await loadFilter(PKG, { config: { mode: 'PERMISSIVE' } });
    f.connection(plain({ namespace: 'shop' }));
    f.connection(plain({ namespace: 'shop' }));
    f.connection(mtls({ namespace: 'shop' }));
    expect(Object.fromEntries(f.counters)).toEqual({ allowed_plaintext: 2, allowed_mtls: 1 });
  });

  it('logs which override made a connection STRICT', async () => {
    const f = await loadFilter(PKG, { config: { mode: 'PERMISSIVE', overrides: [{ namespace: 'pci', workload: 'vault', mode: 'STRICT' }] } });
    f.connection(plain({ namespace: 'pci', workload: 'vault' }));
    expect(f.logs).toEqual([
      { level: 'info', message: 'mtls: plaintext connection to pci/vault refused: STRICT mTLS (from 10.1.0.5); mode STRICT from override namespace pci, workload vault' },
    ]);
  });
});

describe('mtls filter: config errors', () => {
  it('rejects a bad mode naming /mode', async () => {
    const e = await rejection(loadFilter(PKG, { config: { mode: 'strict' } }));
    expect(e.code).toBe('AMBIT_ERR_CONFIG_INVALID');
    expect(e.message).toContain('/mode');
  });

  it('rejects a bad override mode naming its path', async () => {
    const e = await rejection(loadFilter(PKG, { config: { overrides: [{ namespace: 'a', mode: 'OFF' }] } }));
    expect(e.code).toBe('AMBIT_ERR_CONFIG_INVALID');
    expect(e.message).toContain('/overrides/0/mode');
  });

  it('rejects unknown properties, at the top and in an override', async () => {
    const top = await rejection(loadFilter(PKG, { config: { strict: true } }));
    expect(top.message).toMatch(/must NOT have additional properties \(strict\)/);
    const inner = await rejection(loadFilter(PKG, { config: { overrides: [{ namespace: 'a', mode: 'STRICT', port: 80 }] } }));
    expect(inner.message).toMatch(/\/overrides\/0: must NOT have additional properties \(port\)/);
  });

  it('rejects a trust domain that is not a bare lower-case name', async () => {
    const e = await rejection(loadFilter(PKG, { config: { allowedTrustDomains: ['spiffe://cluster.local'] } }));
    expect(e.message).toContain('/allowedTrustDomains/0: must match pattern');
  });

  it('rejects a non-boolean requireTls13', async () => {
    const e = await rejection(loadFilter(PKG, { config: { requireTls13: 'yes' } }));
    expect(e.message).toContain('/requireTls13: must be boolean');
  });

  it('refuses (in setup) an override with neither namespace nor workload', async () => {
    const e = await rejection(loadFilter(PKG, { config: { overrides: [{ mode: 'PERMISSIVE' }] } }));
    expect(e.code).toBe('AMBIT_ERR_CONFIG_REJECTED');
    expect(e.message).toContain('overrides/0: needs a namespace, a workload or both');
  });
});
