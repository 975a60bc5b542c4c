/** Address helpers shared by the config loader and the mesh index. */
import { isIP } from 'node:net';

/**
 * The form a socket reports an address in, so config addresses and `remoteAddress` /
 * SO_ORIGINAL_DST compare as strings: IPv4 as is, IPv4-mapped IPv6 (`::ffff:10.0.0.1`)
 * as the IPv4, other IPv6 lower-case and compressed (RFC 5952). Undefined when `text`
 * is not an IP address.
 */
export function canonicalIp(text: string): string | undefined {
  const kind = isIP(text);
  if (kind === 4) return text;
  if (kind !== 6) return undefined;
  const lower = text.toLowerCase();
  if (lower.includes('%')) return lower; // zone id: URL does not take those
  let inner: string;
  try {
    inner = new URL(`http://[${lower}]/`).hostname.slice(1, -1);
  } catch {
    return lower;
  }
  // WHATWG writes IPv4-mapped addresses in hex (::ffff:a00:1); sockets show them as IPv4.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(inner);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return inner;
}

/**
 * What sockets hand the proxy, made comparable with `canonicalIp` output cheaply: only
 * IPv4-mapped addresses (dual-stack listeners) need changing.
 */
export function socketIp(address: string): string {
  return address.length > 7 && address.charCodeAt(0) === 58 /* : */ && address.startsWith('::ffff:') && address.includes('.')
    ? address.slice(7)
    : address;
}

export type HostPort =
  | { kind: 'ip'; address: string; port: number }
  | { kind: 'name'; host: string; port: number };

/**
 * Parses `<ip>:<port>`, `[<ipv6>]:<port>` or `<name>:<port>` (a service name such as
 * `catalog.demo` or `catalog.demo.svc.cluster.local`). Undefined when malformed.
 */
export function parseHostPort(text: string): HostPort | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return undefined;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (isIP(host) !== 6) return undefined;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return undefined; // bare IPv6 needs brackets
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  const ip = canonicalIp(host);
  if (ip) return { kind: 'ip', address: ip, port };
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+\.?$/.test(host)) return undefined;
  return { kind: 'name', host, port };
}

/**
 * `name.namespace` of a service host name: `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>`
 * (any cluster domain, trailing dot allowed). Undefined for other forms.
 */
export function serviceKeyOfHost(host: string): string | undefined {
  let h = host.endsWith('.') ? host.slice(0, -1) : host;
  h = h.toLowerCase();
  const first = h.indexOf('.');
  if (first <= 0) return undefined;
  const second = h.indexOf('.', first + 1);
  if (second < 0) return h;
  if (h.slice(second + 1, second + 4) !== 'svc' || (h.length > second + 4 && h[second + 4] !== '.')) return undefined;
  return h.slice(0, second);
}

/** `[v6]:port` or `v4:port`, for messages and keys. */
export function formatHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
