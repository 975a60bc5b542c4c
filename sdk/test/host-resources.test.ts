/**
 * The host's side of the 0.2 world without a component: the resources a phase lends
 * (what a read sees after a write, the operations recorded, the head the proxy passed
 * left alone, loans that end) and the rules a filter's output must pass.
 */
import { describe, expect, it } from 'vitest';
import {
  AmbitError, HostContext, HostRequestHead, HostResponseHead, OUTPUT_LIMITS, applyRequestOps, checkAuthority, checkHeaderName, checkHeaderValue,
  checkLocalResponse, checkMethod, checkPath, checkStatus, checkConnectionAction, checkRetry, type RequestHead,
} from '@ambit/filter-sdk/host';
import { thrown } from './helpers.js';

const head = (): RequestHead => ({
  method: 'GET', scheme: 'http', authority: 'a.test', path: '/', headers: [['accept', '*/*'], ['x-a', '1'], ['x-a', '2'], ['cookie', 'c']],
});

function codeOf(e: Error): string | undefined {
  return e instanceof AmbitError ? e.code : undefined;
}

describe('request-head in the request phase', () => {
  it('reads see the call\'s own changes; the proxy\'s head is left alone until the operations are applied', () => {
    const base = head();
    const before = structuredClone(base);
    const r = new HostRequestHead('f', base, 'request');
    r.set('X-A', 'one');
    r.append('x-a', 'two');
    r.remove('Cookie');
    r.setPath('/v2');
    expect(r.getAll('x-a')).toEqual(['one', 'two']);
    expect(r.get('cookie')).toBeUndefined();
    expect(r.has('ACCEPT')).toBe(true);
    expect(r.size()).toBe(3);
    expect(r.path()).toBe('/v2');
    expect(base).toEqual(before);
    expect(r.ops).toEqual([
      { tag: 'set', val: ['x-a', 'one'] }, { tag: 'append', val: ['x-a', 'two'] }, { tag: 'remove', val: 'cookie' }, { tag: 'set', val: [':path', '/v2'] },
    ]);
    applyRequestOps(base, r.ops);
    expect(base.headers).toEqual(r.entries());
    expect(base.path).toBe('/v2');
  });

  it('the operations, applied by the proxy, give the head the filter saw (random edits)', () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const names = ['a', 'B', 'c', 'x-y'];
    for (let round = 0; round < 200; round++) {
      const base = head();
      const r = new HostRequestHead('f', base, 'request');
      for (let i = 0; i < 12; i++) {
        const name = names[rand(names.length)]!;
        const op = rand(3);
        if (op === 0) r.set(name, `v${i}`);
        else if (op === 1) r.append(name, `v${i}`);
        else r.remove(name);
      }
      applyRequestOps(base, r.ops);
      expect(base.headers).toEqual(r.entries());
    }
  });

  it('refuses invalid names and values, pseudo-headers, and too much added at once', () => {
    const r = new HostRequestHead('f', head(), 'request');
    expect(codeOf(thrown(() => r.set('bad name', 'v')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.set(':path', '/x')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.append('x', 'a\r\nb: c')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.setMethod('GE T')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.setAuthority('user@host')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.setPath('no-slash')))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    const many = new HostRequestHead('f', head(), 'request');
    for (let i = 0; i < OUTPUT_LIMITS.addedHeaders; i++) many.append('x-n', String(i));
    const e = thrown(() => many.append('x-n', 'one too many'));
    expect(e.message).toContain(`more than ${OUTPUT_LIMITS.addedHeaders} headers`);
    const big = new HostRequestHead('f', head(), 'request');
    expect(codeOf(thrown(() => big.set('x-big', 'v'.repeat(OUTPUT_LIMITS.addedHeaderBytes))))).toBe('AMBIT_ERR_FILTER_OUTPUT');
  });

  it('a handle used after its call traps', () => {
    const r = new HostRequestHead('f', head(), 'request');
    r.close();
    expect(thrown(() => r.get('accept')).message).toContain('used after the call it was lent for');
    const c = new HostContext({ direction: 'inbound', source: { address: '1.1.1.1', port: 1 }, destination: { address: '2.2.2.2', port: 2 }, requestId: 'r', attempt: 1 });
    expect(c.requestId()).toBe('r');
    c.close();
    expect(thrown(() => c.attempt()).message).toContain('used after the call it was lent for');
  });
});

describe('request-head in the response phase', () => {
  it('reads the forwarded request and refuses every change', () => {
    const r = new HostRequestHead('f', head(), 'response');
    expect(r.getAll('x-a')).toEqual(['1', '2']);
    for (const change of [() => r.set('x', 'y'), () => r.append('x', 'y'), () => r.remove('x-a'), () => r.setPath('/p'), () => r.setMethod('PUT'), () => r.setAuthority('b')]) {
      const e = thrown(change);
      expect(codeOf(e)).toBe('AMBIT_ERR_HOST_CALL');
      expect(e.message).toContain('the forwarded request is read-only in the response phase');
    }
    expect(r.ops).toEqual([]);
  });
});

describe('response-head', () => {
  it('records :status and header changes; a status outside 100–599 is refused', () => {
    const r = new HostResponseHead('f', { status: 200, headers: [['server', 'up']] });
    r.setStatus(204);
    r.set('x-b', '1');
    expect([r.status(), r.entries()]).toEqual([204, [['server', 'up'], ['x-b', '1']]]);
    expect(r.ops).toEqual([{ tag: 'set', val: [':status', '204'] }, { tag: 'set', val: ['x-b', '1'] }]);
    expect(codeOf(thrown(() => r.setStatus(99)))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    expect(codeOf(thrown(() => r.setStatus(600)))).toBe('AMBIT_ERR_FILTER_OUTPUT');
  });
});

describe('output rules', () => {
  it.each([
    ['a header name', () => checkHeaderName('f', 'X-Ok_1.2~'), true],
    ['a name with a colon', () => checkHeaderName('f', 'x:y'), false],
    ['an empty name', () => checkHeaderName('f', ''), false],
    ['a value with a tab and obs-text', () => checkHeaderValue('f', 'x', 'a\tb é'), true],
    ['a value with CR', () => checkHeaderValue('f', 'x', 'a\rb'), false],
    ['a value with NUL', () => checkHeaderValue('f', 'x', 'a\u0000'), false],
    ['a value with DEL', () => checkHeaderValue('f', 'x', 'a\u007f'), false],
    ['a value beyond Latin-1 (sent as UTF-8: obs-text bytes)', () => checkHeaderValue('f', 'x', '€ →'), true],
    ['a path with a query', () => checkPath('f', '/a/b?c=d&e'), true],
    ['a path with a space', () => checkPath('f', '/a b'), false],
    ['a path too long', () => checkPath('f', `/${'a'.repeat(OUTPUT_LIMITS.pathBytes)}`), false],
    ['an authority with a port', () => checkAuthority('f', 'api.default:8080'), true],
    ['an IPv6 authority', () => checkAuthority('f', '[::1]:443'), true],
    ['an authority with userinfo', () => checkAuthority('f', 'u@h'), false],
    ['a method', () => checkMethod('f', 'PATCH'), true],
    ['a method with a slash', () => checkMethod('f', 'GET/'), false],
    ['status 100', () => checkStatus('f', 100), true],
    ['status 599.5', () => checkStatus('f', 599.5), false],
    ['a deny reason of the limit', () => checkConnectionAction('f', { tag: 'deny', val: 'r'.repeat(OUTPUT_LIMITS.reasonBytes) }), true],
    ['a deny reason past it', () => checkConnectionAction('f', { tag: 'deny', val: 'r'.repeat(OUTPUT_LIMITS.reasonBytes + 1) }), false],
    ['a retry reason past it', () => checkRetry('f', { delayMs: 1, reason: 'é'.repeat(OUTPUT_LIMITS.reasonBytes / 2 + 1) }), false],
  ])('%s', (_what, check, ok) => {
    if (ok) expect(check).not.toThrow();
    else expect(codeOf(thrown(check))).toBe('AMBIT_ERR_FILTER_OUTPUT');
  });

  it('a local response: status 200–599, headers checked and lower-cased, sizes capped', () => {
    expect(checkLocalResponse('f', { status: 403, headers: [['Content-Type', 'text/plain']], body: 'no' }))
      .toEqual({ status: 403, headers: [['content-type', 'text/plain']], body: 'no' });
    for (const bad of [
      { status: 199, headers: [], body: '' },
      { status: 600, headers: [], body: '' },
      { status: 200, headers: [['x y', 'v']] as Array<[string, string]>, body: '' },
      { status: 200, headers: Array.from({ length: OUTPUT_LIMITS.responseHeaders + 1 }, (_, i) => [`x-${i}`, 'v'] as [string, string]), body: '' },
      { status: 200, headers: [['x', 'v'.repeat(OUTPUT_LIMITS.responseHeaderBytes)]] as Array<[string, string]>, body: '' },
      { status: 200, headers: [], body: 'b'.repeat(OUTPUT_LIMITS.responseBodyBytes + 1) },
    ]) {
      expect(codeOf(thrown(() => checkLocalResponse('f', bad)))).toBe('AMBIT_ERR_FILTER_OUTPUT');
    }
  });
});
