// Tunnel admission and the `forwarded` header, without sockets.
import { describe, expect, it } from 'vitest';
import { admitTunnel, forwardedFor, parseForwardedFor } from '../src/proxy/tunnels.js';
import type { TunnelRequest } from '../src/hbone/index.js';
import type { WorkloadInfo } from '../src/proxy/state.js';
import { staticState } from './support/state.js';

const TD = 'mesh.test';
const workload = (name: string, address: string, local: boolean): WorkloadInfo => ({
  name, namespace: 'test', serviceAccount: `${name}-sa`, address, identity: `spiffe://${TD}/ns/test/sa/${name}-sa`, local,
});
const state = staticState({ routes: [], workloads: [workload('server', '10.0.2.1', true), workload('client', '10.0.1.1', false), workload('db', 'fd05::5', true)] });

function request(authority: { address: string; port: number }, peer: string, forwarded?: string): TunnelRequest {
  return {
    peerIdentity: peer, peer: { id: peer, trustDomain: TD, path: '' }, authority, source: { address: '10.205.0.1', port: 40000 },
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'node-2' }, headers: forwarded ? { forwarded } : {},
    stream: undefined as unknown as TunnelRequest['stream'],
  };
}

describe('forwarded: for=', () => {
  it('writes and reads IPv4 and IPv6 (quoted, bracketed) source addresses', () => {
    expect(forwardedFor('10.0.1.1')).toBe('for=10.0.1.1');
    expect(forwardedFor('fd05::1')).toBe('for="[fd05::1]"');
    for (const a of ['10.0.1.1', 'fd05::1']) expect(parseForwardedFor(forwardedFor(a))).toBe(a);
    expect(parseForwardedFor('proto=https;for=10.0.1.1, for=10.9.9.9')).toBe('10.0.1.1');
    expect(parseForwardedFor(['for=10.0.1.1', 'for=10.0.1.2'])).toBe('10.0.1.1');
  });

  it('ignores what is not an IP address', () => {
    for (const v of [undefined, '', 'for=unknown', 'for=_hidden', 'for="[zz::1]"', 'by=10.0.0.1', 'for=10.0.0.1.5']) expect(parseForwardedFor(v)).toBeUndefined();
  });
});

describe('admitTunnel', () => {
  const client = `spiffe://${TD}/ns/test/sa/client-sa`;

  it('admits a tunnel to a local workload as an inbound connection with the peer identity, source workload and TLS facts', () => {
    const a = admitTunnel(state, request({ address: '10.0.2.1', port: 8080 }, client, 'for=10.0.1.1'));
    expect(a).toEqual({
      ok: true,
      conn: {
        direction: 'inbound',
        source: { address: '10.0.1.1', port: 0, workload: workload('client', '10.0.1.1', false), identity: client },
        destination: { address: '10.0.2.1', port: 8080 },
        destinationFrom: 'hbone',
      },
      tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: 'node-2' },
    });
  });

  it('without a forwarded source, the source is the peer node, still with the peer identity', () => {
    const a = admitTunnel(state, request({ address: 'fd05::5', port: 5432 }, client));
    expect(a.ok && a.conn.source).toEqual({ address: '10.205.0.1', port: 0, workload: undefined, identity: client });
  });

  it('refuses a destination that is not a workload of this node (404), and a source whose identity is not the peer\'s (403)', () => {
    expect(admitTunnel(state, request({ address: '10.0.1.1', port: 80 }, client))).toMatchObject({ ok: false, status: 404 });
    expect(admitTunnel(state, request({ address: '10.0.9.9', port: 80 }, client))).toMatchObject({ ok: false, status: 404 });
    const wrong = admitTunnel(state, request({ address: '10.0.2.1', port: 8080 }, `spiffe://${TD}/ns/test/sa/intruder`, 'for=10.0.1.1'));
    expect(wrong).toMatchObject({ ok: false, status: 403 });
    expect(!wrong.ok && wrong.reason).toContain('wrong SPIFFE ID');
  });
});
