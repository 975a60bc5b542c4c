/**
 * The L7 pipeline, for HTTP/1.1 and HTTP/2 alike (Node's compatibility API gives both
 * the same request/response shape). A request flows:
 *
 *   request headers → filter chain (request phase) → pick endpoint → upstream try
 *   → filter chain (response phase, may ask to retry) → response to the client
 *
 * Upstream failures before a response become a local 503 that the response phase
 * sees too (with `x-ambit-upstream-error: <kind>`), so a filter can retry them.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { Transform, type Readable } from 'node:stream';
import { applyRequestOps, applyResponseOps, type Headers, type LocalResponse, type RequestDirectives, type RequestHead, type ResponseHead } from '../deps.js';
import type { PhaseOutcome } from '../filters/engine.js';
import type { Telemetry } from '../telemetry/types.js';
import { recordResult } from '../upstream/outlier.js';
import { UpstreamError, type UpstreamClient, type UpstreamResponse } from '../upstream/types.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { Dialer } from '../upstream/dialer.js';
import { connectionRoute, connOf, filterContext, peerRecord, type ConnInfo } from './context.js';
import { fromRawHeaders, headerValue, toHeaderObject } from './headers.js';
import { passthroughRoute } from './passthrough.js';
import { newServiceLoad, type ProxyState, type Route } from './state.js';

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

export interface HttpPipelineDeps {
  state(): ProxyState;
  telemetry: Telemetry;
  http1: UpstreamClient;
  http2: UpstreamClient;
  /** How upstream connections to an endpoint are made for a connection (an HBONE tunnel), if not by TCP. */
  dialer?(conn: ConnInfo, endpoint: Endpoint): Dialer | undefined;
}

interface Attempt {
  endpoint: Endpoint | undefined;
  response: UpstreamResponse | undefined;
  /** A synthesized answer (upstream failure) when there is no upstream response. */
  local: LocalResponse | undefined;
  error: UpstreamError | undefined;
}

export function createRequestHandler(deps: HttpPipelineDeps): (req: Req, res: Res) => void {
  return (req, res) => {
    handle(deps, req, res).catch((e: unknown) => {
      deps.telemetry.error('request handling failed', { error: e instanceof Error ? e.stack : String(e) });
      if (!res.headersSent) sendLocal(res, { status: 500, headers: [['content-type', 'text/plain']], body: 'ambit: internal error\n' });
      else destroy(res);
    });
  };
}

function destroy(res: Res): void {
  if ('stream' in res && res.stream) res.stream.close(0x2 /* INTERNAL_ERROR */);
  else (res as ServerResponse).destroy();
}

function sendLocal(res: Res, r: LocalResponse, log?: { bytesSent: number }): void {
  if (r.body === '' && 'stream' in res && res.stream && headerValue(r.headers, 'grpc-status') !== undefined) {
    // A local gRPC status (e.g. an injected fault): a trailers-only response, the status
    // in the one HEADERS frame that ends the stream, as gRPC clients expect.
    if (log) log.bytesSent = 0;
    res.stream.respond({ ...toHeaderObject(r.headers), ':status': r.status }, { endStream: true });
    return;
  }
  const headers = toHeaderObject(r.headers);
  const body = Buffer.from(r.body);
  if (log) log.bytesSent = body.length;
  headers['content-length'] = String(body.length);
  res.writeHead(r.status, headers);
  res.end(body);
}

async function handle(deps: HttpPipelineDeps, req: Req, res: Res): Promise<void> {
  // The request keeps the state snapshot (and its filter chains) it started on until it
  // is done here, even if the client left earlier or a reload swapped in another.
  const state = deps.state();
  const release = state.retain();
  try {
    await handleOn(state, deps, req, res);
  } finally {
    release();
  }
}

async function handleOn(state: ProxyState, deps: HttpPipelineDeps, req: Req, res: Res): Promise<void> {
  const started = performance.now();
  const conn = connOf(req.socket);
  if (!conn) throw new Error('request on a connection the proxy did not accept');
  const isH2 = req.httpVersion === '2.0';
  const rawHeaders = req.rawHeaders;
  const head: RequestHead = {
    method: req.method ?? 'GET',
    scheme: 'http',
    authority: (isH2 ? (req as Http2ServerRequest).authority : req.headers.host) ?? `${conn.destination.address}:${conn.destination.port}`,
    path: req.url ?? '/',
    headers: fromRawHeaders(rawHeaders),
  };
  let requestId = headerValue(head.headers, 'x-request-id');
  if (!requestId) {
    requestId = randomUUID();
    head.headers.push(['x-request-id', requestId]);
  }
  const route = state.routeByHost?.(conn.direction, head.authority, conn.destination.port)
    ?? connectionRoute(state, conn)
    ?? passthroughRoute(conn);
  const grpc = (headerValue(head.headers, 'content-type') ?? '').startsWith('application/grpc');
  // Body bytes of this request and its response (Envoy's bytes_received / bytes_sent).
  const log = {
    bytesReceived: 0, bytesSent: 0,
    status: 0, attempts: 0, localReply: undefined as { filter: string; reason: string } | undefined,
    upstream: undefined as { address: string; port: number } | undefined, upstreamError: undefined as string | undefined,
    grpcStatus: undefined as string | undefined,
  };
  const ctx0 = filterContext(conn, route, requestId, 1);
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    deps.telemetry.request({
      direction: conn.direction,
      protocol: grpc ? 'grpc' : isH2 ? 'h2' : 'http/1.1',
      method: head.method,
      authority: head.authority,
      path: head.path,
      status: res.headersSent ? res.statusCode : log.status,
      grpcStatus: log.grpcStatus,
      durationMs: performance.now() - started,
      requestId: requestId!,
      source: peerRecord(ctx0.source),
      destination: peerRecord(ctx0.destination),
      service: route.service,
      upstream: log.upstream,
      attempts: log.attempts,
      bytesReceived: log.bytesReceived,
      bytesSent: log.bytesSent,
      localReply: log.localReply,
      upstreamError: log.upstreamError,
      userAgent: headerValue(head.headers, 'user-agent'),
    });
  };
  res.once('close', finish);
  res.once('finish', finish);

  // Requests (and retries) in flight to the service, for filters' retry budgets.
  const load = route.load ??= newServiceLoad();
  Atomics.add(load, 0, 1);
  // Whether this request counts as retrying in `load[1]` (counted by the filter worker
  // when the first retry is decided).
  let retrying = false;
  res.once('close', () => {
    Atomics.sub(load, 0, 1);
    if (retrying) Atomics.sub(load, 1, 1);
  });

  // Request phase.
  const chain = route.chain;
  let directives: RequestDirectives | undefined;
  if (chain && route.l7) {
    const out = await chain.run({ phase: 'requestHeaders', ctx: ctx0, request: head, load });
    deps.telemetry.filterPhase('requestHeaders', out);
    if (out.action === 'respond') {
      log.localReply = { filter: out.filter, reason: localReason(out) };
      log.status = out.response.status;
      drain(req);
      sendLocal(res, out.response, log);
      return;
    }
    if (out.action === 'continue') {
      applyRequestOps(head, out.ops);
      directives = out.directives;
    }
  }

  // A subset a filter chose (traffic split): its endpoints instead of the whole service's.
  let endpoints = route.endpoints;
  if (directives?.subset !== undefined) {
    const chosen = route.subsets?.get(directives.subset);
    if (!chosen) {
      const defined = route.subsets ? [...route.subsets.keys()].join(', ') : 'none';
      const reason = `subset "${directives.subset}" is not defined for ${route.service ?? route.name} (defined: ${defined}); add it to the service's subsets in the mesh config`;
      log.localReply = { filter: 'ambit', reason };
      log.status = 503;
      drain(req);
      sendLocal(res, { status: 503, headers: [['content-type', 'text/plain'], ['x-ambit-upstream-error', 'no-subset']], body: `no healthy upstream: ${reason}\n` }, log);
      return;
    }
    endpoints = chosen;
  }
  const perTryTimeoutMs = directives?.perTryTimeoutMs !== undefined && directives.perTryTimeoutMs > 0
    ? (route.requestTimeoutMs > 0 ? Math.min(route.requestTimeoutMs, directives.perTryTimeoutMs) : directives.perTryTimeoutMs)
    : route.requestTimeoutMs;

  // Body: buffered (so it can be sent again) when small and complete, streamed otherwise.
  const limits = state.limits;
  let body: Buffer | Readable | null | undefined = null;
  let retriable = true;
  const length = Number(req.headers['content-length'] ?? (isH2 ? Number.NaN : 0));
  const chunked = !isH2 && req.headers['transfer-encoding'] !== undefined;
  if (!chunked && length === 0) body = null;
  else if (!chunked && Number.isFinite(length) && length <= limits.retryBufferBytes && !grpc) body = await readBody(req, limits.retryBufferBytes);
  else if (isH2 && !grpc && (req as Http2ServerRequest).stream.endAfterHeaders) body = null;
  else { body = req; retriable = false; }
  if (body === undefined) return; // client went away while sending
  let sendBody: Buffer | Readable | null = body;
  if (Buffer.isBuffer(body)) log.bytesReceived = body.length;
  else if (body) {
    // Counted on the way through; a 'data' listener on the request itself would start
    // the flow before the upstream is ready for it.
    sendBody = body.pipe(new Transform({
      transform(chunk: Buffer, _enc, done) { log.bytesReceived += chunk.length; done(null, chunk); },
    }));
  }

  const client = isH2 || route.protocol === 'http2' ? deps.http2 : deps.http1;
  // Whether the client went away. (No AbortSignal handed to the upstream client: it
  // costs a third of the throughput; a response that arrives for a client that left is
  // discarded instead.)
  let clientGone = false;
  res.once('close', () => { if (!res.writableFinished) clientGone = true; });

  // A delay a filter asked for (fault injection), before anything goes upstream.
  if (directives?.delayMs) {
    await sleep(directives.delayMs);
    if (clientGone) return;
  }

  let attempt = 1;
  let excluded: Endpoint | undefined;
  for (;;) {
    log.attempts = attempt;
    const tried = await tryUpstream(client, route, endpoints, perTryTimeoutMs, head, sendBody, excluded, deps.dialer ? (ep) => deps.dialer!(conn, ep) : undefined);
    if (clientGone) { tried.response?.body.destroy(); return; }
    const ctx = attempt === 1 ? ctx0 : { ...ctx0, attempt };
    log.upstream = tried.endpoint ? { address: tried.endpoint.address, port: tried.endpoint.port } : undefined;
    log.upstreamError = tried.error?.kind;
    let resHead: ResponseHead = tried.response
      ? { status: tried.response.status, headers: tried.response.headers }
      : { status: tried.local!.status, headers: tried.local!.headers.slice() };
    if (chain && route.l7) {
      const out = await chain.run({
        phase: 'responseHeaders', ctx, request: head, response: resHead,
        facts: { upstreamError: tried.error?.kind }, load,
      });
      deps.telemetry.filterPhase('responseHeaders', out);
      if (out.action === 'retry') {
        // The engine counted this request as retrying when its first retry was decided.
        retrying = true;
        // Whether a method may be retried is the filter's call; the host only checks it can resend the body.
        const canRetry = retriable && attempt < limits.maxAttempts;
        if (canRetry) {
          tried.response?.body.destroy();
          if (out.retry.delayMs > 0) await sleep(Math.min(out.retry.delayMs, 60_000));
          if (clientGone) return;
          if (tried.error && tried.endpoint) excluded = tried.endpoint;
          attempt++;
          continue;
        }
        deps.telemetry.warn('retry not possible; returning the last response', {
          filter: out.filter, reason: out.retry.reason, attempt,
          why: !retriable ? 'request body was streamed, not buffered' : `attempt limit ${limits.maxAttempts} reached`,
        });
      } else if (out.action === 'respond') {
        tried.response?.body.destroy();
        log.localReply = { filter: out.filter, reason: localReason(out) };
        log.status = out.response.status;
        sendLocal(res, out.response, log);
        return;
      } else if (out.action === 'continue' && out.ops.length > 0) {
        resHead = { status: resHead.status, headers: resHead.headers.slice() };
        applyResponseOps(resHead, out.ops);
      }
    }
    if (!tried.response) {
      log.localReply = { filter: 'ambit', reason: tried.error?.message ?? 'no upstream' };
      log.status = resHead.status;
      sendLocal(res, { status: resHead.status, headers: resHead.headers, body: tried.local!.body }, log);
      return;
    }
    await forwardResponse(res, resHead, tried.response, log);
    return;
  }
}

function localReason(out: PhaseOutcome): string {
  if (out.failures.length > 0) return `${out.failures[0]!.kind}: ${out.failures[0]!.message}`;
  return out.action === 'respond' ? `status ${out.response.status}` : out.action;
}

async function tryUpstream(
  client: UpstreamClient, route: Route, endpoints: Endpoint[], timeoutMs: number, head: RequestHead, body: Buffer | Readable | null, exclude?: Endpoint,
  dialerFor?: (ep: Endpoint) => Dialer | undefined,
): Promise<Attempt> {
  const ep = route.balancer.pick(endpoints, Date.now(), exclude);
  if (!ep) {
    const error = new UpstreamError('no-healthy-upstream', `no endpoints for ${route.service ?? route.name}`);
    return { endpoint: undefined, response: undefined, error, local: upstreamFailure(error) };
  }
  ep.active++;
  try {
    const response = await client.send(ep.address, ep.port, {
      method: head.method, path: head.path, authority: head.authority, scheme: head.scheme, headers: head.headers,
      body, timeoutMs, connectTimeoutMs: route.connectTimeoutMs, dial: dialerFor?.(ep),
    });
    recordResult(ep, response.status >= 500, endpoints, route.outlier);
    let released = false;
    const release = () => { if (!released) { released = true; ep.active--; } };
    response.body.once('end', release);
    response.body.once('close', release);
    response.body.once('error', release);
    return { endpoint: ep, response, local: undefined, error: undefined };
  } catch (e) {
    ep.active--;
    const error = e instanceof UpstreamError ? e : new UpstreamError('protocol-error', String(e));
    recordResult(ep, true, endpoints, route.outlier);
    return { endpoint: ep, response: undefined, error, local: upstreamFailure(error) };
  }
}

/** Envoy's wording, so people find it: "upstream connect error or disconnect/reset before headers". */
function upstreamFailure(e: UpstreamError): LocalResponse {
  const status = e.kind === 'timeout' ? 504 : 503;
  const what = e.kind === 'timeout' ? 'upstream request timeout' : e.kind === 'no-healthy-upstream' ? 'no healthy upstream' : 'upstream connect error or disconnect/reset before headers';
  return {
    status,
    headers: [['content-type', 'text/plain'], ['x-ambit-upstream-error', e.kind]],
    body: `${what}. reset reason: ${e.kind}: ${e.message}\n`,
  };
}

async function forwardResponse(
  res: Res, head: ResponseHead, up: UpstreamResponse,
  log: { status: number; bytesSent: number; upstreamError: string | undefined; grpcStatus: string | undefined },
): Promise<void> {
  log.status = head.status;
  log.grpcStatus = headerValue(head.headers, 'grpc-status');
  if (log.grpcStatus !== undefined && 'stream' in res && res.stream) {
    // gRPC "trailers-only" response: status in the one HEADERS frame that ends the stream.
    up.body.resume();
    res.stream.respond({ ...toHeaderObject(head.headers), ':status': head.status }, { endStream: true });
    return;
  }
  res.writeHead(head.status, toHeaderObject(head.headers));
  await new Promise<void>((resolve) => {
    const body = up.body;
    let failed = false;
    body.on('error', (e: Error) => {
      // The response is under way: the client can only learn by the stream breaking.
      failed = true;
      log.upstreamError = `reset: ${e.message}`;
      destroy(res);
      resolve();
    });
    body.on('data', (c: Buffer) => { log.bytesSent += c.length; });
    body.pipe(res as NodeJS.WritableStream, { end: false });
    body.once('end', () => {
      void up.trailers.then((trailers) => {
        if (failed) return;
        if (trailers.length > 0) {
          const grpcStatus = headerValue(trailers, 'grpc-status');
          if (grpcStatus !== undefined) log.grpcStatus = grpcStatus;
          res.addTrailers(toHeaderObject(trailers) as Record<string, string>);
        }
        res.end();
        resolve();
      });
    });
    res.once('close', () => {
      if (!res.writableFinished) body.destroy();
      resolve();
    });
  });
}

/** Reads a body of at most `limit` bytes (the caller checked content-length). Undefined if the client left. */
function readBody(req: Req, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) { req.destroy(); resolve(undefined); return; }
      chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', () => resolve(undefined));
    req.once('aborted', () => resolve(undefined));
  });
}

/** Consumes a request body we won't forward, so the connection can be reused. */
function drain(req: Req): void {
  req.resume();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type { ConnInfo, Headers };
