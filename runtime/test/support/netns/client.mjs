// The client of the capture tests, run inside a test network namespace by
// `ip netns exec <ns> node client.mjs`. Every loop here is bounded.
//
//   AMBIT_WAIT_READY=<url>  first polls <url> until it answers 200 (every 100 ms, at most
//                           AMBIT_WAIT_MS, default 20 s); exits 3 if it never does.
//   AMBIT_REQUESTS=<json>   then makes each request in turn, [{ url, method?, headers? }],
//                           one connection each, and prints a JSON array of results:
//                           { status, headers, body (parsed when JSON), socket } where socket is
//                           what getpeername/getsockname said once connected
//                           ({ remoteAddress, remotePort, localAddress, localPort }), or
//                           { error, socket } when the request failed.
import http from 'node:http';

const TIMEOUT_MS = 5_000;

function once(spec) {
  return new Promise((resolve) => {
    let socketInfo;
    let settled = false;
    const done = (r) => {
      if (settled) return;
      settled = true;
      resolve({ ...r, socket: socketInfo });
    };
    const req = http.request(spec.url, { method: spec.method ?? 'GET', headers: spec.headers ?? {}, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let body = text;
        try { body = JSON.parse(text); } catch { /* not JSON: keep the text */ }
        done({ status: res.statusCode, headers: res.headers, body });
      });
      res.on('error', (e) => done({ error: e.code ?? e.message }));
    });
    req.on('socket', (s) => {
      const record = () => {
        socketInfo = { remoteAddress: s.remoteAddress, remotePort: s.remotePort, localAddress: s.localAddress, localPort: s.localPort };
      };
      if (s.connecting) s.once('connect', record);
      else record();
    });
    req.setTimeout(TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => done({ error: e.code ?? e.message }));
    req.end();
  });
}

const waitUrl = process.env.AMBIT_WAIT_READY;
if (waitUrl) {
  const deadline = Date.now() + Number(process.env.AMBIT_WAIT_MS ?? 20_000);
  for (let ok = false; !ok;) {
    const r = await once({ url: waitUrl });
    ok = r.status === 200;
    if (!ok) {
      if (Date.now() > deadline) {
        console.error(`${waitUrl} not ready: ${JSON.stringify(r)}`);
        process.exit(3);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

const out = [];
for (const spec of JSON.parse(process.env.AMBIT_REQUESTS ?? '[]')) out.push(await once(spec));
process.stdout.write(JSON.stringify(out));
