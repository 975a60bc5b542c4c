import { beforeAll, describe, expect, it } from 'vitest';
import { loadFilter, type TestFilter } from '@ambit/filter-sdk/testing';

// `npm test` builds dist/filter.wasm first (pretest); loadFilter runs that component.
let filter: TestFilter;
beforeAll(async () => {
  filter = await loadFilter('.');
});

describe('__FILTER_NAME__', () => {
  it('adds its header to a request and lets it through', () => {
    const r = filter.request({ path: '/hello' });
    expect(r.action).toBe('continue');
    if (r.action !== 'continue') return;
    expect(r.request.headers).toContainEqual(['x-__FILTER_NAME__', 'seen']);
  });
});
