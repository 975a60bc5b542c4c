import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';

// `npm test` builds dist/filter.wasm first (pretest); loadFilter runs that component.
let filter: TestFilter;
beforeAll(async () => {
  filter = await loadFilter('.', {
    config: { request: { set: [{ name: 'x-env', value: 'staging' }], remove: ['cookie'] } },
  });
});

describe('__FILTER_NAME__', () => {
  it('sets and removes request headers', () => {
    const r = filter.request({ path: '/', headers: { cookie: 'session=1', accept: '*/*' } });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.request.headers).toContainEqual(['x-env', 'staging']);
    expect(r.request.headers.some(([name]) => name === 'cookie')).toBe(false);
  });

  it('rewrites response headers with the defaults', () => {
    const r = filter.response({ status: 200, headers: { server: 'nginx', 'content-type': 'text/plain' } });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.response.headers).toContainEqual(['x-__FILTER_NAME__', 'rewritten']);
    expect(r.response.headers.some(([name]) => name === 'server')).toBe(false);
  });
});
