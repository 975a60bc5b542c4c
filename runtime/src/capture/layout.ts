/**
 * The byte layouts of the capture maps' keys and values, mirroring `bpf/lib/maps.h` (change
 * both together). Addresses are copied as network-order bytes; ports as the header says.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { canonicalIp } from '../mesh/address.js';

export const AF_INET = 2;
export const AF_INET6 = 10;

export const CFG_ENABLED = 1;
export const CFG_SOCKHASH = 2;

export const DEST_MESHED = 1;
export const DEST_LOCAL = 2;

/** enum ambit_stat, in order. */
export const STAT_NAMES = [
  'connectRedirected',
  'connectDirect',
  'origDstAnswered',
  'peernameRewritten',
  'sockhashAdded',
  'msgRedirected',
  'msgRedirectedBytes',
  'msgStack',
  'closed',
] as const;
export type StatName = (typeof STAT_NAMES)[number];

/** 16 bytes: an IPv4 address in the first 4, or an IPv6 address. */
export function ipBytes(ip: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(ip)) {
    ip.split('.').forEach((o, i) => { out[i] = Number(o); });
    return out;
  }
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${ip}`);
  const [head = '', tail] = ip.split('::');
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  let left = groups(head);
  let right = tail === undefined ? [] : groups(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4) as two groups.
  const fix = (g: string[]) => g.flatMap((x) => x.includes('.') ? (() => { const b = x.split('.').map(Number); return [((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16)]; })() : [x]);
  left = fix(left);
  right = fix(right);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Text form of 16 address bytes of `family`. */
export function ipText(family: number, bytes: Buffer): string {
  if (family === AF_INET) return [...bytes.subarray(0, 4)].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  const full = groups.join(':');
  return canonicalIp(full) ?? full;
}

export interface ConfigValue {
  proxyIp4?: string;
  proxyIp6?: string;
  proxyPort: number;
  flags: number;
  proxyCgroupId: bigint;
  proxyNetnsCookie: bigint;
}

/** struct ambit_config (48 bytes). */
export function encodeConfig(c: ConfigValue): Buffer {
  const b = Buffer.alloc(48);
  if (c.proxyIp4) ipBytes(c.proxyIp4).copy(b, 0, 0, 4);
  if (c.proxyIp6) ipBytes(c.proxyIp6).copy(b, 4);
  b.writeUInt16LE(c.proxyPort, 20);
  b.writeUInt16LE(c.flags, 22);
  b.writeBigUInt64LE(c.proxyCgroupId, 32);
  b.writeBigUInt64LE(c.proxyNetnsCookie, 40);
  return b;
}

export interface DestKey { family: 4 | 6; ip: string; port: number }

/** struct ambit_dest_key (24 bytes). */
export function encodeDestKey(d: DestKey): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(d.family === 4 ? AF_INET : AF_INET6, 0);
  ipBytes(d.ip).copy(b, 4);
  b.writeUInt32LE(d.port, 20);
  return b;
}

export function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value, 0);
  return b;
}

/** struct ambit_tuple (56 bytes): the client's address, as the proxy sees it. */
export function tupleClient(key: Buffer): { family: number; ip: string; port: number } {
  const family = key.readUInt32LE(8);
  return { family, ip: ipText(family, key.subarray(12, 28)), port: key.readUInt32LE(44) };
}

/** struct ambit_sock_key (56 bytes, the netns cookie last): the local address. */
export function sockKeyLocal(key: Buffer): { family: number; ip: string } {
  const family = key.readUInt32LE(0);
  return { family, ip: ipText(family, key.subarray(4, 20)) };
}

export const SIZES = { config: 48, destKey: 24, orig: 32, tuple: 56, sockKey: 56 } as const;
