/**
 * TCP server of the capture tests and benchmark, run inside a test pod or node namespace.
 *
 *   AMBIT_LISTEN="10.206.2.2:18190,…"  addresses to listen on; prints READY once all listen.
 *   A connection's first bytes `WHO?\n` get `<peer ip>:<peer port>\n` (who the server saw);
 *   `SINK <n>\n` makes it read n bytes and answer `OK\n` (throughput); anything else is echoed.
 * Exits when its stdin closes, so it cannot outlive whoever started it.
 */
import net from 'node:net';

const specs = (process.env['AMBIT_LISTEN'] ?? '').split(',').filter(Boolean);
if (specs.length === 0) {
  process.stderr.write('AMBIT_LISTEN is empty\n');
  process.exit(2);
}

function serve(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let mode: 'start' | 'echo' | 'sink' = 'start';
  let left = 0;
  socket.on('data', (chunk: Buffer) => {
    if (mode === 'start') {
      const text = chunk.subarray(0, 32).toString('latin1');
      if (text.startsWith('WHO?\n')) {
        socket.write(`${socket.remoteAddress}:${socket.remotePort}\n`);
        chunk = chunk.subarray(5);
        mode = 'echo';
      } else if (text.startsWith('SINK ')) {
        const nl = text.indexOf('\n');
        left = Number(text.slice(5, nl));
        chunk = chunk.subarray(nl + 1);
        mode = 'sink';
      } else {
        mode = 'echo';
      }
    }
    if (chunk.length === 0) return;
    if (mode === 'echo') socket.write(chunk);
    else {
      left -= chunk.length;
      if (left <= 0) {
        socket.write('OK\n');
        mode = 'echo';
      }
    }
  });
}

let listening = 0;
const servers = specs.map((spec) => {
  const cut = spec.lastIndexOf(':');
  const server = net.createServer(serve);
  server.listen(Number(spec.slice(cut + 1)), spec.slice(0, cut).replace(/^\[|\]$/g, ''), () => {
    if (++listening === specs.length) process.stdout.write('READY\n');
  });
  server.on('error', (e) => {
    process.stderr.write(`${spec}: ${e.message}\n`);
    process.exit(1);
  });
  return server;
});
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of servers) s.close();
  process.exit(0);
});
