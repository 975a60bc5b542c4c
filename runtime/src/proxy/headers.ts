/** Header conversions between Node's HTTP objects and the filter ABI's lists. */
import type { Headers } from '../deps.js';

/** Connection-scoped headers a proxy must not forward (RFC 9110 §7.6.1), plus HTTP/2 pseudo-headers. */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer',
  'proxy-authenticate', 'proxy-authorization', 'http2-settings', 'host',
]);

/** Lower-cased [name, value] pairs from Node's rawHeaders, without hop-by-hop headers or pseudo-headers. */
export function fromRawHeaders(raw: readonly string[]): Headers {
  const out: Headers = [];
  let connectionTokens: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'connection') {
      connectionTokens ??= new Set();
      for (const t of raw[i + 1]!.split(',')) connectionTokens.add(t.trim().toLowerCase());
    }
    if (name.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(name)) continue;
    out.push([name, raw[i + 1]!]);
  }
  if (connectionTokens) return out.filter(([n]) => !connectionTokens!.has(n));
  return out;
}

/** Headers list → Node's outgoing headers object (repeated names become arrays). */
export function toHeaderObject(list: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of list) {
    const prev = out[k];
    if (prev === undefined) out[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[k] = [prev, v];
  }
  return out;
}

/** A Node incoming headers object (undici / http2) → headers list, hop-by-hop and pseudo-headers dropped. */
export function fromHeaderObject(h: Record<string, string | string[] | number | undefined>): Headers {
  const out: Headers = [];
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const name = k.toLowerCase();
    if (name.charCodeAt(0) === 58 || HOP_BY_HOP.has(name)) continue;
    if (Array.isArray(v)) for (const one of v) out.push([name, one]);
    else out.push([name, String(v)]);
  }
  return out;
}

export function headerValue(list: Headers, name: string): string | undefined {
  for (const [k, v] of list) if (k === name) return v;
  return undefined;
}
