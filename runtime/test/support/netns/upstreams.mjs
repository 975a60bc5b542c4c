// HTTP upstreams for the capture tests, run inside a test network namespace by
// `ip netns exec <ns> node upstreams.mjs`. AMBIT_UPSTREAMS="alpha=127.0.0.1:18181,beta=127.0.0.1:18182":
// each answers every request with JSON naming itself and echoing the request (method, path,
// headers, the peer it saw). Prints READY once all listen; exits when its stdin closes, so it
// cannot outlive the test process that started it.
import http from 'node:http';

const specs = (process.env.AMBIT_UPSTREAMS ?? '').split(',').filter(Boolean);
if (specs.length === 0) {
  console.error('AMBIT_UPSTREAMS is empty');
  process.exit(2);
}
const servers = [];
let ready = 0;
for (const spec of specs) {
  const [name, hostPort] = spec.split('=');
  const cut = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, cut);
  const port = Number(hostPort.slice(cut + 1));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({
        upstream: name,
        method: req.method,
        path: req.url,
        headers: req.headers,
        peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-upstream': name });
      res.end(body);
    });
  });
  server.on('error', (e) => {
    console.error(`upstream ${name} on ${hostPort}: ${e.message}`);
    process.exit(1);
  });
  server.listen(port, host, () => {
    if (++ready === specs.length) process.stdout.write('READY\n');
  });
  servers.push(server);
}
const stop = () => {
  for (const s of servers) s.closeAllConnections();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
