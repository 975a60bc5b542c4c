/**
 * Which filter engine a node runs when the wasmtime addon cannot load: `auto` says why in
 * one line and runs on V8; `wasmtime` refuses to start with a coded error. The addon is
 * blocked in a child process (as on a machine without cargo).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFixtures, HELLO_DIR } from './fixtures.js';
import { runUntilConfigDump, type AmbitRun } from './support/ambit-run.js';
import { freePort } from './support/upstreams.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const BLOCK = path.join(here, 'support/native/block.cjs');

function meshYaml(engine: string, ports: { outbound: number; inbound: number; admin: number }): string {
  return `node: n1
proxy:
  outbound: { address: 127.0.0.1, port: ${ports.outbound}, target: "api.test:80" }
  inbound: { address: 127.0.0.1, port: ${ports.inbound} }
  admin: { address: 127.0.0.1, port: ${ports.admin} }
  engine: ${engine}
  workers: 1
services:
  - name: api
    namespace: test
    ports: [{ port: 80, targetPort: 9, protocol: http }]
    endpoints: [{ address: 127.0.0.1 }]
bindings:
  - name: greet
    target: { service: api.test }
    direction: outbound
    filters:
      - ref: ${HELLO_DIR}
        config: { header: x-hello }
`;
}

type Run = AmbitRun<{ engine: string; engineInfo: Record<string, unknown> }>;

/** Starts `ambit run` with the addon blocked; reads /config_dump once ready, or the exit when it fails. */
async function runBlocked(dir: string, engine: string): Promise<Run> {
  const ports = { outbound: await freePort(), inbound: await freePort(), admin: await freePort() };
  const config = path.join(dir, `${engine}.yaml`);
  await writeFile(config, meshYaml(engine, ports));
  return runUntilConfigDump(config, ports.admin, { nodeArgs: ['-r', BLOCK] });
}

describe('filter engine choice when the wasmtime addon cannot load', () => {
  let dir: string;
  beforeAll(async () => {
    await buildFixtures();
    dir = await mkdtemp(path.join(os.tmpdir(), 'ambit-engine-choice-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('engine: auto says why in one line and runs the filters on V8', async () => {
    const r = await runBlocked(dir, 'auto');
    expect(r.dump?.engine, r.output).toBe('v8');
    const lines = r.output.split('\n').filter((l) => l.includes('filter engine:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('filter engine: v8 (engine: auto; wasmtime unavailable:');
    expect(lines[0]).toContain('blocked by the test');
    // And the data path (dataPath: auto) steps down to node, saying why in one line.
    const paths = r.output.split('\n').filter((l) => l.includes('data path:'));
    expect(paths).toHaveLength(1);
    expect(paths[0]).toContain('data path: node (dataPath: auto; @ambit/native cannot load:');
  }, 90_000);

  it('engine: wasmtime refuses to start, naming the reason and what to do', async () => {
    const r = await runBlocked(dir, 'wasmtime');
    expect(r.dump).toBeUndefined();
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('AMBIT_ERR_ENGINE_UNAVAILABLE');
    expect(r.output).toContain('blocked by the test');
    expect(r.output).toContain('set proxy.engine to auto or v8');
  }, 90_000);
});
