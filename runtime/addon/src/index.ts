/**
 * Linux socket facts for the node proxy that Node itself does not expose, read by a small N-API
 * addon in C (`src/addon.c`, built by node-gyp into `build/Release/ambit_addon.node`).
 *
 * The addon is optional at run time: when it is not built, cannot be loaded, or the platform is
 * not Linux, `available` is false, `unavailableReason` says what to do, and every function returns
 * null. The caller then falls back (the proxy to the listener's configured target) and says so once.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

/** Where a connection was headed before a netfilter NAT redirect sent it to this socket. */
export interface OriginalDestination {
  /** Dotted IPv4 (`10.0.0.5`) or IPv6 text (`fd00::5`), without brackets or zone. */
  address: string;
  port: number;
  family: 4 | 6;
}

interface NativeAddon {
  originalDst(fd: number): OriginalDestination | null;
  socketCookie(fd: number): bigint;
  netnsCookie(fd: number): bigint | null;
}

/** Absolute path of the compiled addon this module loads. */
export const addonPath: string = fileURLToPath(
  new URL('../build/Release/ambit_addon.node', import.meta.url),
);

/** Environment variable that, set to `1`, makes this module act as if the addon were not built. */
export const DISABLE_ENV = 'AMBIT_DISABLE_ADDON';

const BUILD_HINT =
  'run `npm run build` at the repository root, or `npm run build -w @ambit/addon` ' +
  '(needs a C compiler, make, python3 and Node headers in /usr/include/node)';

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n', 1)[0] ?? text;
}

function isNativeAddon(value: unknown): value is NativeAddon {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v['originalDst'] === 'function' &&
    typeof v['socketCookie'] === 'function' &&
    typeof v['netnsCookie'] === 'function'
  );
}

function load(): { native: NativeAddon; reason: undefined } | { native: undefined; reason: string } {
  const fail = (reason: string) => ({ native: undefined, reason });
  if (process.env[DISABLE_ENV] === '1') {
    return fail(`native addon disabled by ${DISABLE_ENV}=1: unset it to read original destinations`);
  }
  if (process.platform !== 'linux') {
    return fail(
      `native addon is Linux-only (this is ${process.platform}): original destinations and socket cookies are unavailable`,
    );
  }
  if (!existsSync(addonPath)) {
    return fail(`native addon not built (${addonPath} is missing): ${BUILD_HINT}`);
  }
  try {
    const loaded: unknown = createRequire(import.meta.url)(addonPath);
    if (!isNativeAddon(loaded)) {
      return fail(`native addon at ${addonPath} lacks the expected functions (stale build?): ${BUILD_HINT}`);
    }
    return { native: loaded, reason: undefined };
  } catch (error) {
    return fail(`native addon at ${addonPath} failed to load (${firstLine(error)}): ${BUILD_HINT}`);
  }
}

const loaded = load();
const native: NativeAddon | undefined = loaded.native;

/** True when the native addon is loaded and the functions below answer. */
export const available: boolean = native !== undefined;

/** When `available` is false: one line saying why and what to do. Undefined otherwise. */
export const unavailableReason: string | undefined = loaded.reason;

/**
 * The destination the connection on `fd` had before an iptables/nftables REDIRECT or DNAT sent it
 * here (`SO_ORIGINAL_DST`, or `IP6T_SO_ORIGINAL_DST` for IPv6 sockets; a dual-stack socket with an
 * IPv4 peer answers with family 4).
 *
 * Returns null when the connection was not redirected (conntrack has no entry, conntrack is not
 * loaded, or the original destination is this socket's own address), for non-IP sockets, and when
 * the addon is not available. Throws an Error whose `code` is the errno name (`EBADF`, `ENOTSOCK`…)
 * for anything else, and a TypeError/RangeError when `fd` is not a non-negative integer.
 */
export function originalDst(fd: number): OriginalDestination | null {
  return native ? native.originalDst(fd) : null;
}

/**
 * The socket's cookie (`SO_COOKIE`): a non-zero 64-bit id, unique while the kernel runs, the same
 * value eBPF programs get from `bpf_get_socket_cookie()`. Null when the addon is not available.
 * Throws like {@link originalDst}.
 */
export function socketCookie(fd: number): bigint | null {
  return native ? native.socketCookie(fd) : null;
}

/**
 * The cookie of the socket's network namespace (`SO_NETNS_COOKIE`, kernel ≥ 5.14; what eBPF gets from
 * `bpf_get_netns_cookie()`). Null on older kernels and when the addon is not available.
 */
export function netnsCookie(fd: number): bigint | null {
  return native ? native.netnsCookie(fd) : null;
}

/**
 * The file descriptor under a connected or listening `net.Socket` (its libuv handle's `fd`), or
 * undefined when there is none: not yet connected, destroyed, or not backed by a kernel socket
 * (e.g. a socket over a JS stream).
 */
export function socketFd(socket: Socket): number | undefined {
  const handle: unknown = (socket as unknown as { _handle?: unknown })._handle;
  if (typeof handle !== 'object' || handle === null) return undefined;
  const fd: unknown = (handle as { fd?: unknown }).fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}
