/**
 * Keys for peers (`context.source-key`, `context.destination-key`) on V8: a number
 * naming one peer (all five fields), the same for as long as this host runs, never
 * handed out again for another peer. The table is bounded and starts over when full
 * (peers seen again get new keys); once the count would pass 2^32 - 2 the answer is
 * 0, "do not keep". The guest keeps the records it read by key.
 */
import type { Peer } from '../abi/types.js';

/** Peers remembered before the table starts over. */
export const MAX_PEER_KEYS = 1024;
const LAST_KEY = 2 ** 32 - 2;

const keys = new Map<string, number>();
let last = 0;

const field = (v: string | undefined | null): string => (v === undefined || v === null ? '\u0000' : `\u0001${v}`);

export function peerKey(p: Peer): number {
  const id = `${field(p.identity)}\u0002${field(p.workload)}\u0002${field(p.namespace)}\u0002${p.address}\u0002${p.port}`;
  const known = keys.get(id);
  if (known !== undefined) return known;
  if (last >= LAST_KEY) return 0;
  if (keys.size >= MAX_PEER_KEYS) keys.clear();
  last += 1;
  keys.set(id, last);
  return last;
}
