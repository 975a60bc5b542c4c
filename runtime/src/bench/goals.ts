/** The numbers issue 12 sets for the filter ABI, each with what this run measured and whether it is met. */
import type { BuiltinRow } from './builtins-wasmtime.js';
import type { HelloRow } from './hello.js';
import type { InstanceResults } from './instances.js';

export interface Goal {
  what: string;
  unit: 'µs' | 'MiB';
  /** At most this much. */
  limit: number;
  /** The measured p50 (wall time), or the memory figure. */
  value: number;
  /** The same in CPU time (undefined for memory). */
  cpuValue: number | undefined;
  met: boolean;
  /** Met when counted in CPU time: what the run would show without other processes competing. */
  metByCpu: boolean | undefined;
}

function goal(what: string, unit: Goal['unit'], limit: number, value: number, cpuValue?: number): Goal {
  return { what, unit, limit, value, cpuValue, met: value <= limit, metByCpu: cpuValue === undefined ? undefined : cpuValue <= limit };
}

export function goals(hello: HelloRow[], builtins: BuiltinRow[], instances: InstanceResults): Goal[] {
  const out: Goal[] = [];
  const one = hello.find((r) => r.runner === 'wasmtime-0.2' && r.chain === 1);
  if (one) out.push(goal('hello, request phase, in-thread on wasmtime (p50)', 'µs', 5, one.us.p50, one.cpuUs.p50));
  const chain = builtins.find((r) => r.what === 'chain');
  if (chain) {
    out.push(goal(
      'six built-ins, both phases of one request, in-thread on wasmtime (p50 request + p50 response)', 'µs', 40,
      chain.request.us.p50 + chain.response.us.p50, chain.request.cpuUs.p50 + chain.response.cpuUs.p50,
    ));
  }
  out.push(goal('fresh instance, instantiated (pooling allocator, pre-initialized image), wasmtime (p50)', 'µs', 30, instances.instantiateUs.p50, instances.instantiateCpuUs.p50));
  // A per-request binding also runs the filter's configure on every new instance.
  out.push(goal('fresh instance, instantiated and configured (ready to call), wasmtime (p50)', 'µs', 30, instances.readyUs.p50, instances.readyCpuUs.p50));
  // Two readings of the same held instances: every page they touched (RSS, as the issue's
  // baseline was taken), and the pages that are theirs alone (anonymous: the image pages an
  // instance only read are one copy in the page cache for every instance of the filter).
  out.push(goal('memory per ready instance, wasmtime: resident (RSS, incl. shared image pages it read)', 'MiB', 0.3, instances.rssPerInstanceBytes / 2 ** 20));
  out.push(goal('memory per ready instance, wasmtime: its own pages (RssAnon)', 'MiB', 0.3, instances.privatePerInstanceBytes / 2 ** 20));
  return out;
}
