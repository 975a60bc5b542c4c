/**
 * What every measured call gets: a `requestHeaders` phase with realistic headers on a
 * path the example filter lets through (it adds one header per filter), and the
 * configs of the chain members (distinct header names, so the 5-filter chain holds
 * 5 distinct instances and adds 5 headers).
 */
import type { PhaseInput } from './deps.js';

let seq = 0;

export function requestInput(): Extract<PhaseInput, { phase: 'requestHeaders' }> {
  seq = (seq + 1) | 0;
  return {
    phase: 'requestHeaders',
    ctx: {
      direction: 'inbound',
      source: { address: '10.0.0.1', port: 40312, identity: 'spiffe://cluster.local/ns/shop/sa/web', workload: 'web', namespace: 'shop' },
      destination: { address: '10.0.0.2', port: 8080, workload: 'cart', namespace: 'shop' },
      service: 'cart.shop.svc.cluster.local',
      route: 'default',
      requestId: `bench-${seq}`,
      attempt: 1,
    },
    request: {
      method: 'GET',
      scheme: 'http',
      authority: 'cart.shop.svc.cluster.local',
      path: '/api/v1/cart/items?limit=20',
      headers: [
        ['user-agent', 'ambit-bench/1.0'],
        ['accept', 'application/json'],
        ['accept-encoding', 'gzip, br'],
        ['x-request-id', `bench-${seq}`],
        ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
        ['cookie', 'session=8f14e45fceea167a5a36dedd4bea2543'],
      ],
    },
  };
}

/** Header the i-th chain member adds. */
export function memberHeader(i: number): string {
  return `x-ambit-hello-${i + 1}`;
}

/** Config of the i-th chain member (before the schema fills in defaults). */
export function memberConfig(i: number): Record<string, unknown> {
  return { header: memberHeader(i) };
}
