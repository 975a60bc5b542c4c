/**
 * `/config_dump` shows no secrets: filter config values a schema marks `"x-ambit-secret": true`,
 * and values of keys named like credentials (header values in a headers filter's config), are
 * `<redacted>`; the rest is shown. Checked on the function both dumps use, and on a running node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { runNode, type RunningNode } from '@ambit/runtime';
import { configDumpJson } from '../src/admin/server.js';
import { redactFilterConfig, REDACTED } from '../src/node/redact.js';
import { buildBuiltinFilters, builtinDir } from './fixtures.js';

describe('what /config_dump redacts', () => {
  const schema = {
    type: 'object',
    properties: {
      endpoint: { type: 'string' },
      apiToken: { type: 'string', 'x-ambit-secret': true },
      upstreams: { type: 'array', items: { type: 'object', properties: { url: { type: 'string' }, password: { type: 'string' }, key: { type: 'string', 'x-ambit-secret': true } } } },
      extra: { anyOf: [{ type: 'object', properties: { signingKey: { 'x-ambit-secret': true } } }, { type: 'null' }] },
      headers: { type: 'object', additionalProperties: { type: 'string' } },
    },
  };

  it('replaces what the schema marks secret and values named like credentials, nothing else', () => {
    const config = {
      endpoint: 'https://authz.example',
      apiToken: 'tok-123',
      upstreams: [{ url: 'u1', password: 'p1', key: 'k1' }],
      extra: { signingKey: { kid: 'a', d: 'xyz' } },
      headers: { authorization: 'Bearer abc', cookie: 'sid=1', 'x-api-key': 'key', 'x-request-source': 'mesh' },
    };
    expect(JSON.parse(configDumpJson(redactFilterConfig(config, schema)))).toEqual({
      endpoint: 'https://authz.example',
      apiToken: REDACTED,
      upstreams: [{ url: 'u1', password: REDACTED, key: REDACTED }],
      extra: { signingKey: REDACTED },
      headers: { authorization: REDACTED, cookie: REDACTED, 'x-api-key': REDACTED, 'x-request-source': 'mesh' },
    });
    // Without a schema, names still count; values that are not secret stay.
    expect(JSON.parse(configDumpJson(redactFilterConfig({ set: { Authorization: 'Bearer x', 'Set-Cookie': 'a=b', 'x-trace': 'on' } }, undefined))))
      .toEqual({ set: { Authorization: REDACTED, 'Set-Cookie': REDACTED, 'x-trace': 'on' } });
  });
});

describe('/config_dump of a running node', () => {
  let dir: string;
  let node: RunningNode;
  beforeAll(async () => {
    await buildBuiltinFilters();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-redact-'));
    await writeFile(path.join(dir, 'mesh.yaml'), `
node: n1
proxy:
  outbound: { address: 127.0.0.1, port: 15001, target: "api.test:80" }
  inbound: { address: 127.0.0.1, port: 15006 }
  admin: { address: 127.0.0.1, port: 15000 }
services:
  - name: api
    namespace: test
    ports: [{ port: 80, targetPort: 9, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: creds
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${JSON.stringify(builtinDir('headers'))}
        config:
          request:
            set: { authorization: "Bearer s3cr3t-token", x-api-key: k-777, x-env: staging }
`);
    node = await runNode({ config: path.join(dir, 'mesh.yaml'), accessLog: 'off', logLevel: 'silent', ports: { outbound: 0, inbound: 0, admin: 0 } });
  });
  afterAll(async () => {
    await node?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('shows header values named like credentials as <redacted>', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: node.admin!.address().port, path: '/config_dump' }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => { text += d.toString(); });
        res.on('end', () => resolve(text));
      }).on('error', reject);
    });
    expect(body).not.toContain('s3cr3t-token');
    expect(body).not.toContain('k-777');
    const dump = JSON.parse(body) as { config: { bindings: Array<{ filters: Array<{ config: { request: { set: Record<string, string> } } }> }> } };
    expect(dump.config.bindings[0]!.filters[0]!.config.request.set).toEqual({ authorization: REDACTED, 'x-api-key': REDACTED, 'x-env': 'staging' });
  });
});
