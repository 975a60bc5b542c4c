/**
 * The original destination of a captured connection: what the eBPF `cgroup/getsockopt`
 * program or an nftables REDIRECT answer to `SO_ORIGINAL_DST` on the accepted socket.
 * Read through the native addon; without it, listeners use their configured target.
 */
import * as addon from '@ambit/addon';
import type { Socket } from 'node:net';
import type { OriginalDstReader } from './proxy.js';

export interface OriginalDstSupport {
  reader: OriginalDstReader | undefined;
  /** Why SO_ORIGINAL_DST cannot be read here, if it cannot. */
  unavailable: string | undefined;
}

export function originalDstSupport(): OriginalDstSupport {
  if (!addon.available) return { reader: undefined, unavailable: addon.unavailableReason ?? 'native addon unavailable' };
  const reader: OriginalDstReader = (socket: Socket) => {
    const fd = addon.socketFd(socket);
    if (fd === undefined) return null;
    try {
      const d = addon.originalDst(fd);
      return d ? { address: d.address, port: d.port } : null;
    } catch {
      return null;
    }
  };
  return { reader, unavailable: undefined };
}
