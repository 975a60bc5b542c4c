/**
 * `ambit demo`: builds the example filter from TypeScript and sends sample traffic
 * through the filter host, printing what the chain decided for each.
 */
import path from 'node:path';
import { buildFilter } from '@ambit/filter-sdk/build';
import { loadFilterArtifact, type Context, type RequestHead } from '../deps.js';
import { bindingFromArtifact } from '../filters/binding.js';
import { V8Engine } from '../filters/v8/engine.js';
import type { PhaseInput, PhaseOutcome } from '../filters/engine.js';

function context(attempt = 1, identity?: string): Context {
  return {
    direction: 'inbound',
    source: { address: '10.0.1.4', port: 43122, identity, workload: 'frontend', namespace: 'shop' },
    destination: { address: '10.0.2.7', port: 8080, workload: 'catalog', namespace: 'shop' },
    service: 'catalog.shop',
    route: 'catalog',
    requestId: `demo-${attempt}-${Math.random().toString(16).slice(2, 8)}`,
    attempt,
  };
}

function describe(o: PhaseOutcome): string {
  switch (o.action) {
    case 'continue': return o.ops.length ? `continue, ${o.ops.map((op) => (op.tag === 'remove' ? `remove ${op.val}` : `${op.tag} ${op.val[0]}: ${op.val[1]}`)).join('; ')}` : 'continue';
    case 'respond': return `respond ${o.response.status} (${o.filter}): ${o.response.body.trim()}`;
    case 'deny': return `deny (${o.filter}): ${o.reason}`;
    case 'retry': return `retry (${o.filter}): ${o.retry.reason}`;
  }
}

export async function runFilterDemo(repoRoot: string, out: (line: string) => void): Promise<void> {
  const dir = path.join(repoRoot, 'examples/filters/hello');
  out('Building examples/filters/hello from TypeScript…');
  await buildFilter({ dir, log: (l) => out(`  ${l}`) });
  const artifact = await loadFilterArtifact(dir);
  const engine = new V8Engine({ onLog: (f, level, msg) => out(`  [${f} ${level}] ${msg}`) });
  try {
    const config = { header: 'x-ambit-hello', denyPathPrefixes: ['/admin'], retryOn: [503], maxAttempts: 3, requireIdentity: true };
    out(`\nLoading it into the V8 filter engine with config ${JSON.stringify(config)}`);
    const chain = await engine.createChain([bindingFromArtifact(artifact, { config })]);
    const req = (p: string): RequestHead => ({ method: 'GET', scheme: 'http', authority: 'catalog.shop', path: p, headers: [['accept', '*/*']] });
    const spiffe = 'spiffe://cluster.local/ns/shop/sa/frontend';
    const samples: Array<[string, PhaseInput]> = [
      ['connection from an mTLS peer', { phase: 'connection', conn: { context: context(1, spiffe), tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', sni: undefined } } }],
      ['plaintext connection (requireIdentity)', { phase: 'connection', conn: { context: context(1), tls: undefined } }],
      ['GET /products', { phase: 'requestHeaders', ctx: context(1, spiffe), request: req('/products') }],
      ['GET /admin/users', { phase: 'requestHeaders', ctx: context(1, spiffe), request: req('/admin/users') }],
      ['503 from upstream, attempt 1', { phase: 'responseHeaders', ctx: context(1, spiffe), request: req('/products'), response: { status: 503, headers: [] } }],
      ['200 from upstream, attempt 2', { phase: 'responseHeaders', ctx: context(2, spiffe), request: req('/products'), response: { status: 200, headers: [] } }],
    ];
    out('');
    for (const [label, input] of samples) {
      const o = await chain.run(input);
      out(`${input.phase.padEnd(16)} ${label.padEnd(40)} → ${describe(o)}`);
    }
    const stats = engine.stats().get('hello');
    if (stats) out(`\nhello: ${stats.calls} calls, ${(stats.totalMs / stats.calls).toFixed(3)} ms mean (first calls include warm-up)`);
    await chain.close();
  } finally {
    await engine.close();
  }
}
