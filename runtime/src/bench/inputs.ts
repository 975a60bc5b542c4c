/**
 * What every measured phase gets: a realistic request (20 headers, as a browser or an
 * SDK behind a gateway sends them) on a path the example filter lets through, from a
 * workload with a SPIFFE identity; the response the upstream sent; and the configs of
 * the chain members (distinct header names, so a 5-filter chain holds 5 distinct
 * bindings and adds 5 headers).
 */
import type { Context, PhaseInput, RequestHead, ResponseHead } from './deps.js';

export type RequestInput = Extract<PhaseInput, { phase: 'requestHeaders' }>;
export type ResponseInput = Extract<PhaseInput, { phase: 'responseHeaders' }>;

let seq = 0;

export function benchContext(requestId: string): Context {
  return {
    direction: 'outbound',
    source: { address: '10.0.0.5', port: 40312, identity: 'spiffe://cluster.local/ns/bench/sa/web', workload: 'web', namespace: 'bench' },
    destination: { address: '10.0.0.2', port: 8080, workload: 'cart', namespace: 'bench' },
    service: 'cart.bench.svc.cluster.local',
    route: 'cart.bench.svc.cluster.local:8080',
    requestId,
    attempt: 1,
  };
}

/** The request head: 20 headers. */
export function benchRequest(requestId: string): RequestHead {
  return {
    method: 'GET',
    scheme: 'http',
    authority: 'cart.bench.svc.cluster.local',
    path: '/api/v1/cart/items?limit=20',
    headers: [
      ['host', 'cart.bench.svc.cluster.local'],
      ['user-agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36'],
      ['accept', 'application/json, text/plain, */*'],
      ['accept-encoding', 'gzip, deflate, br, zstd'],
      ['accept-language', 'en-US,en;q=0.9,de;q=0.8'],
      ['cache-control', 'no-cache'],
      ['pragma', 'no-cache'],
      ['referer', 'https://shop.example.com/cart'],
      ['origin', 'https://shop.example.com'],
      ['x-request-id', requestId],
      ['x-forwarded-for', '203.0.113.7, 10.0.0.5'],
      ['x-forwarded-proto', 'https'],
      ['traceparent', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
      ['tracestate', 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'],
      ['baggage', 'userId=alice,serverNode=DF%2028,isProduction=false'],
      ['authorization', 'Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'],
      ['cookie', 'session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; cart=3'],
      ['sec-fetch-mode', 'cors'],
      ['x-internal', 'drop-me'],
      ['content-length', '0'],
    ],
  };
}

export function requestInput(): RequestInput {
  seq = (seq + 1) | 0;
  const id = `bench-${seq}`;
  return { phase: 'requestHeaders', ctx: benchContext(id), request: benchRequest(id) };
}

export function benchResponse(): ResponseHead {
  return {
    status: 200,
    headers: [
      ['content-type', 'application/json; charset=utf-8'],
      ['content-length', '1532'],
      ['cache-control', 'private, max-age=0'],
      ['date', 'Fri, 04 Dec 2026 12:00:00 GMT'],
      ['server', 'cart/1.4.2'],
      ['vary', 'accept-encoding'],
    ],
  };
}

/** The response phase of the same request, as it was forwarded. */
export function responseInput(): ResponseInput {
  const { ctx, request } = requestInput();
  return { phase: 'responseHeaders', ctx, request, response: benchResponse() };
}

/** Header the i-th chain member adds. */
export function memberHeader(i: number): string {
  return `x-ambit-hello-${i + 1}`;
}

/** Config of the i-th chain member (before the schema fills in defaults). */
export function memberConfig(i: number): Record<string, unknown> {
  return { header: memberHeader(i) };
}
