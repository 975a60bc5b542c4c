/**
 * One node proxy's end of the stream, in its own process, for its memory: connects as
 * `node`, takes the config and reports its heap (after a GC) before and after.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { controlplane } from '@ambit/runtime';

const [address, node] = process.argv.slice(2) as [string, string];
const gc = () => (globalThis as { gc?: () => void }).gc?.();
gc();
const before = process.memoryUsage().heapUsed;
const tokenFile = path.join(os.tmpdir(), `ambit-bench-token-${process.pid}`);
await writeFile(tokenFile, node);
const stream = new controlplane.ConfigStream({ connection: { address, tokenFile }, node });
await stream.start();
const first = await stream.first();
stream.ack(first);
await new Promise((r) => setTimeout(r, 200));
const { value } = stream.resources.assemble(node);
gc();
const after = process.memoryUsage().heapUsed;
process.send!({ type: 'node-memory', before, after, resources: stream.resources.size, services: (value.services as unknown[]).length, workloads: (value.workloads as unknown[]).length });
stream.close();
process.exit(0);
