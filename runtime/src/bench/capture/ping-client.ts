/**
 * TCP client of the capture tests and benchmark, run inside a test pod namespace. Bounded: every
 * run ends within AMBIT_TIMEOUT_MS (default 30 s). Prints one JSON object.
 *
 *   AMBIT_TARGET=<ip>:<port>  where to connect (a VIP, a workload, anything)
 *   AMBIT_WHO=1               first ask the server who it sees (`WHO?`): result.who
 *   AMBIT_ROUNDS=n            then n ping-pongs of AMBIT_SIZE bytes (default 64): result.rttUs (median, p99)
 *   AMBIT_STREAM_BYTES=n      then stream n bytes into the server's sink on a second connection: result.streamGBps
 *   AMBIT_CONNECTS=n          instead: n connect + 1 ping-pong + close in a row: result.connectUs (median, p99)
 *   AMBIT_SETTLE_MS=n         wait n ms after connecting before the first write (the first write decides
 *                             whether a socket's bytes take the sockhash or TCP: let both ends be in the map)
 */
import net from 'node:net';

const target = process.env['AMBIT_TARGET'] ?? '';
const cut = target.lastIndexOf(':');
const host = target.slice(0, cut).replace(/^\[|\]$/g, '');
const port = Number(target.slice(cut + 1));
const size = Number(process.env['AMBIT_SIZE'] ?? 64);
const timeout = setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: 'timed out' }));
  process.exit(3);
}, Number(process.env['AMBIT_TIMEOUT_MS'] ?? 30_000));

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** Reads until `n` bytes (or a line when n is 0) have arrived. */
function read(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      parts.push(d);
      got += d.length;
      const all = Buffer.concat(parts);
      if ((n > 0 && got >= n) || (n === 0 && all.includes(10))) {
        s.off('data', onData);
        s.off('error', reject);
        s.off('close', onClose);
        resolve(all);
      }
    };
    const onClose = () => reject(new Error(`connection closed after ${got} bytes`));
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', onClose);
  });
}

function summary(samples: number[]): { median: number; p99: number; n: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { median: at(0.5), p99: at(0.99), n: sorted.length };
}

/** Streams n bytes on a new connection into the server's sink; GB/s until its `OK`. */
async function stream(n: number): Promise<number> {
  const s = await connect();
  const settle = Number(process.env['AMBIT_SETTLE_MS'] ?? 0);
  if (settle > 0) await new Promise((r) => setTimeout(r, settle));
  const chunk = Buffer.alloc(64 * 1024, 0x63);
  const t0 = process.hrtime.bigint();
  s.write(`SINK ${n}\n`);
  let sent = 0;
  while (sent < n) {
    const piece = n - sent >= chunk.length ? chunk : chunk.subarray(0, n - sent);
    sent += piece.length;
    if (!s.write(piece)) await new Promise((r) => s.once('drain', r));
  }
  const ok = (await read(s, 0)).toString('latin1');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  s.destroy();
  if (!ok.startsWith('OK')) throw new Error(`sink answered ${JSON.stringify(ok.slice(0, 20))}`);
  return n / seconds / 1e9;
}

const result: Record<string, unknown> = {};
try {
  const connects = Number(process.env['AMBIT_CONNECTS'] ?? 0);
  if (connects > 0) {
    const payload = Buffer.alloc(size, 0x61);
    const samples: number[] = [];
    for (let i = 0; i < connects; i++) {
      const t0 = process.hrtime.bigint();
      const s = await connect();
      s.write(payload);
      await read(s, size);
      samples.push(Number(process.hrtime.bigint() - t0) / 1000);
      s.destroy();
    }
    result['connectUs'] = summary(samples);
  } else {
    const s = await connect();
    const settle = Number(process.env['AMBIT_SETTLE_MS'] ?? 0);
    if (settle > 0) await new Promise((r) => setTimeout(r, settle));
    result['peer'] = { address: s.remoteAddress, port: s.remotePort };
    result['local'] = { address: s.localAddress, port: s.localPort };
    if (process.env['AMBIT_WHO'] === '1') {
      s.write('WHO?\n');
      result['who'] = (await read(s, 0)).toString('latin1').trim();
    }
    const rounds = Number(process.env['AMBIT_ROUNDS'] ?? 0);
    if (rounds > 0) {
      const payload = Buffer.alloc(size, 0x62);
      const samples: number[] = [];
      let echoed = 0;
      for (let i = 0; i < rounds; i++) {
        const t0 = process.hrtime.bigint();
        s.write(payload);
        const back = await read(s, size);
        if (back.equals(payload)) echoed++;
        samples.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
      result['rounds'] = rounds;
      result['echoed'] = echoed;
      result['rttUs'] = summary(samples);
    }
    s.destroy();
    const streamBytes = Number(process.env['AMBIT_STREAM_BYTES'] ?? 0);
    if (streamBytes > 0) result['streamGBps'] = await stream(streamBytes);
  }
} catch (e) {
  result['error'] = e instanceof Error ? ((e as NodeJS.ErrnoException).code ?? e.message) : String(e);
}
clearTimeout(timeout);
process.stdout.write(JSON.stringify(result));
