import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { bindingFromArtifact, NodeProxy, V8Engine } from '@ambit/runtime';
import { buildFixtures } from './fixtures.js';
import { staticState } from './support/state.js';
import { recordingTelemetry, until, type RecordingTelemetry } from './support/telemetry.js';
import { h2Upstream, type Upstream } from './support/upstreams.js';

interface EchoMsg { text: string; n?: number }

const json = {
  serialize: (v: EchoMsg) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as EchoMsg,
};

const echoService: grpc.ServiceDefinition = {
  echo: {
    path: '/ambit.test.Echo/Echo', requestStream: false, responseStream: false,
    requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize,
  },
  chat: {
    path: '/ambit.test.Echo/Chat', requestStream: true, responseStream: true,
    requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize,
  },
};

type EchoClient = grpc.Client & {
  echo(req: EchoMsg, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: EchoMsg) => void): grpc.ClientUnaryCall;
  chat(md?: grpc.Metadata): grpc.ClientDuplexStream<EchoMsg, EchoMsg>;
};
const EchoClientCtor = grpc.makeGenericClientConstructor(echoService, 'Echo') as unknown as new (addr: string, creds: grpc.ChannelCredentials) => EchoClient;

function h2request(port: number, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': body === undefined ? 'GET' : 'POST', ':path': path, ...headers });
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let data = '';
    req.on('response', (h) => { status = Number(h[':status']); resHeaders = h; });
    req.on('trailers', (t) => { trailers = t; });
    req.on('data', (d: Buffer) => { data += d.toString(); });
    req.on('end', () => { session.close(); resolve({ status, headers: resHeaders, trailers, body: data }); });
    req.on('error', reject);
    if (body === undefined) req.end();
    else req.end(body);
  });
}

describe('node proxy: HTTP/2, gRPC and WebSocket on loopback', () => {
  let engine: V8Engine;
  let h2: Upstream;
  let grpcServer: grpc.Server;
  let grpcPort: number;
  let wss: WebSocketServer;
  let wsPort: number;
  let proxy: NodeProxy;
  let telemetry: RecordingTelemetry;
  const ports: Record<string, number> = {};
  const grpcSeen: grpc.Metadata[] = [];

  beforeAll(async () => {
    const fx = await buildFixtures();
    engine = new V8Engine({ workers: 2, onLog: () => {} });
    h2 = await h2Upstream('h2');
    grpcServer = new grpc.Server();
    grpcServer.addService(echoService, {
      echo: (call: grpc.ServerUnaryCall<EchoMsg, EchoMsg>, cb: grpc.sendUnaryData<EchoMsg>) => {
        grpcSeen.push(call.metadata);
        if (call.request.text === 'missing') {
          cb({ code: grpc.status.NOT_FOUND, details: 'no such thing', metadata: new grpc.Metadata() });
          return;
        }
        cb(null, { text: `echo:${call.request.text}` });
      },
      chat: (call: grpc.ServerDuplexStream<EchoMsg, EchoMsg>) => {
        let n = 0;
        call.on('data', (m: EchoMsg) => call.write({ text: `re:${m.text}`, n: ++n }));
        call.on('end', () => call.end());
      },
    });
    grpcPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    wsPort = (wss.address() as AddressInfo).port;
    wss.on('connection', (ws, req) => {
      ws.send(`welcome ${req.headers['x-ambit-hello'] ?? 'anonymous'}`);
      ws.on('message', (m) => ws.send(`echo:${m.toString()}`));
    });

    const chain = () => engine.createChain([bindingFromArtifact(fx.hello, { config: { denyPathPrefixes: ['/admin', '/ambit.test.Echo/Forbidden'] } })]);
    const routes = [
      { address: '10.96.1.1', port: 80, service: 'h2.default', endpoints: [['127.0.0.1', h2.port]] as Array<[string, number]> },
      { address: '10.96.1.2', port: 80, service: 'h2-filtered.default', endpoints: [['127.0.0.1', h2.port]] as Array<[string, number]>, chain: await chain() },
      { address: '10.96.1.3', port: 50051, service: 'grpc.default', endpoints: [['127.0.0.1', grpcPort]] as Array<[string, number]> },
      { address: '10.96.1.4', port: 50051, service: 'grpc-filtered.default', endpoints: [['127.0.0.1', grpcPort]] as Array<[string, number]>, chain: await chain() },
      { address: '10.96.1.5', port: 80, service: 'ws.default', endpoints: [['127.0.0.1', wsPort]] as Array<[string, number]> },
      { address: '10.96.1.6', port: 80, service: 'ws-filtered.default', endpoints: [['127.0.0.1', wsPort]] as Array<[string, number]>, chain: await chain() },
    ];
    telemetry = recordingTelemetry();
    proxy = new NodeProxy({
      listeners: routes.map((r) => ({ name: r.service.split('.')[0]!, direction: 'outbound' as const, address: '127.0.0.1', port: 0, target: { address: r.address, port: r.port } })),
      state: staticState({ routes }),
      telemetry,
    });
    await proxy.start();
    for (const [name, a] of Object.entries(proxy.addresses())) ports[name] = a.port;
  });

  afterAll(async () => {
    await proxy?.close(100);
    await engine?.close();
    await h2?.close();
    grpcServer?.forceShutdown();
    wss?.close();
  });

  it('carries HTTP/2 prior-knowledge (h2c) with trailers, with and without filters', async () => {
    const plain = await h2request(ports.h2!, '/a', { 'x-in': '1' }, 'body-1');
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.body)).toMatchObject({ upstream: 'h2', path: '/a', body: 'body-1' });
    expect(plain.trailers['x-trailer']).toBe('done');

    const filtered = await h2request(ports['h2-filtered']!, '/b', { 'x-in': '2' });
    expect(filtered.status).toBe(200);
    expect(filtered.trailers['x-trailer']).toBe('done');
    expect(filtered.headers['x-ambit-attempts']).toBe('1');
    const seen = h2.seen.find((s) => s.path === '/b')!;
    expect(seen.headers).toContainEqual(['x-ambit-hello', 'hello from 127.0.0.1']);
    expect(seen.headers).toContainEqual(['x-in', '2']);

    const denied = await h2request(ports['h2-filtered']!, '/admin');
    expect(denied.body).toContain('forbidden by policy hello');
    expect(denied.status).toBe(403);
    await until(() => telemetry.requests.some((r) => r.path === '/b'), 'h2 access record');
    expect(telemetry.requests.find((r) => r.path === '/b')).toMatchObject({ protocol: 'h2', status: 200, service: 'h2-filtered.default' });
  });

  for (const target of ['grpc', 'grpc-filtered'] as const) {
    it(`passes gRPC unary calls, status codes and bidirectional streams (${target})`, async () => {
      const client = new EchoClientCtor(`127.0.0.1:${ports[target]}`, grpc.credentials.createInsecure());
      try {
        const md = new grpc.Metadata();
        md.set('x-call', target);
        const reply = await new Promise<EchoMsg>((resolve, reject) => client.echo({ text: 'hi' }, md, (e, r) => (e ? reject(e) : resolve(r!))));
        expect(reply.text).toBe('echo:hi');
        const last = grpcSeen[grpcSeen.length - 1]!;
        expect(last.get('x-call')).toEqual([target]);
        if (target === 'grpc-filtered') expect(last.get('x-ambit-hello')).toEqual(['hello from 127.0.0.1']);

        const err = await new Promise<grpc.ServiceError>((resolve) => client.echo({ text: 'missing' }, new grpc.Metadata(), (e) => resolve(e!)));
        expect(err.code).toBe(grpc.status.NOT_FOUND);
        expect(err.details).toBe('no such thing');

        const call = client.chat();
        const got: EchoMsg[] = [];
        const done = new Promise<void>((resolve, reject) => {
          call.on('data', (m: EchoMsg) => got.push(m));
          call.on('end', () => resolve());
          call.on('error', reject);
        });
        for (const t of ['a', 'b', 'c']) call.write({ text: t });
        call.end();
        await done;
        expect(got).toEqual([{ text: 're:a', n: 1 }, { text: 're:b', n: 2 }, { text: 're:c', n: 3 }]);
      } finally {
        client.close();
      }
    });
  }

  it('answers a denied gRPC method from the filter without reaching the server', async () => {
    const status = await h2request(ports['grpc-filtered']!, '/ambit.test.Echo/Forbidden', { 'content-type': 'application/grpc', te: 'trailers' }, '');
    expect(status.status).toBe(403);
  });

  for (const target of ['ws', 'ws-filtered'] as const) {
    it(`passes a WebSocket upgrade through (${target})`, async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${ports[target]}/chat`);
      const messages: string[] = [];
      await new Promise<void>((resolve, reject) => {
        ws.on('message', (m) => {
          messages.push(m.toString());
          if (messages.length === 1) ws.send('ping');
          if (messages.length === 2) resolve();
        });
        ws.on('error', reject);
      });
      ws.close();
      expect(messages).toEqual([target === 'ws-filtered' ? 'welcome hello from 127.0.0.1' : 'welcome anonymous', 'echo:ping']);
    });
  }

  it('answers a denied WebSocket upgrade locally', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports['ws-filtered']}/admin/socket`);
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => resolve(-1));
    });
    expect(status).toBe(403);
  });
});
