import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';

// `npm test` builds dist/filter.wasm first (pretest); loadFilter runs that component.
let filter: TestFilter;
beforeAll(async () => {
  filter = await loadFilter('.', { config: { denyPathPrefixes: ['/admin', '/internal'] } });
});

describe('__FILTER_NAME__', () => {
  it('lets an allowed request through unchanged', () => {
    expect(filter.request({ method: 'GET', path: '/products' })).toMatchObject({ action: 'continue', ops: [] });
  });

  it('answers 403 for a denied path prefix, and counts it', () => {
    const r = filter.request({ path: '/internal/metrics' });
    expect(r).toMatchObject({ action: 'respond', response: { status: 403 } });
    expect(filter.counters.get('denied_path')).toBe(1);
  });

  it('answers 405 for a method it does not allow', () => {
    expect(filter.request({ method: 'TRACE', path: '/' })).toMatchObject({ action: 'respond', response: { status: 405 } });
  });

  it('refuses a config that breaks its schema, naming the JSON path', async () => {
    await expect(loadFilter('.', { config: { denyPathPrefixes: ['admin'] } })).rejects.toThrow(/AMBIT_ERR_CONFIG_INVALID.*\/denyPathPrefixes\/0/);
  });
});
