/** HBONE CONNECT authorities: `<ipv4>:<port>` or `[<ipv6>]:<port>`, never a host name. */
import net from 'node:net';

export interface SocketAddress {
  address: string;
  port: number;
}

const PORT = /^[0-9]{1,5}$/;

function parsePort(s: string): number | undefined {
  if (!PORT.test(s)) return undefined;
  const port = Number(s);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Parses a CONNECT `:authority`; `undefined` unless it is an IP literal and a port 1–65535. */
export function parseAuthority(authority: string | undefined): SocketAddress | undefined {
  if (!authority) return undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0 || authority[close + 1] !== ':') return undefined;
    const address = authority.slice(1, close);
    const port = parsePort(authority.slice(close + 2));
    if (port === undefined || address.includes('%') || !net.isIPv6(address)) return undefined;
    return { address, port };
  }
  const colon = authority.lastIndexOf(':');
  if (colon < 0) return undefined;
  const address = authority.slice(0, colon);
  const port = parsePort(authority.slice(colon + 1));
  if (port === undefined || !net.isIPv4(address)) return undefined;
  return { address, port };
}

/** `10.0.0.1:80`, `[fd00::1]:80`. */
export function formatAuthority(a: SocketAddress): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Whether `a` is an IP literal and a valid port. */
export function isSocketAddress(a: SocketAddress): boolean {
  return net.isIP(a.address) !== 0 && !a.address.includes('%') && Number.isInteger(a.port) && a.port >= 1 && a.port <= 65535;
}
