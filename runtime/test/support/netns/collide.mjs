// A pod that tries to take over another pod's short-circuited connection, run in pod a's netns and
// cgroup (enrolled, so its sockets meet the capture's sockops). Bounded: exits within
// AMBIT_TIMEOUT_MS (default 30 s). Prints one JSON object.
//
// 1. A session to AMBIT_TARGET (a VIP of pod b's echo server, through the proxy, short-circuited):
//    a few ping-pongs.
// 2. The proxy's upstream connection(s) to AMBIT_VICTIM (pod b's echo, ip:port), read with `ss` in
//    the node's netns (AMBIT_NODE_NETNS): their tuples (proxy ip:port -> pod b ip:port).
// 3. The same two addresses added to this netns's lo, and a connection made here with exactly that
//    tuple (a listener on pod b's ip:port, a client bound to the proxy's ip:port): sockets that look
//    like both ends of the victim's connection, in another network namespace. The listener is made
//    in the pod's cgroup (its accepted socket meets the pod's sockops, as pod b's does); then this
//    process moves to AMBIT_ESCAPE_CGROUP (a cgroup.procs file) so that its connect is not sent to
//    the proxy by the pod's connect4 (a pod has other ways to make a socket with a chosen tuple).
// 4. More ping-pongs on the session: they must all come back; the look-alike sockets must get nothing.
//
// Result: { rounds, echoed, stolen, tuples, error? }. The added addresses are removed at the end.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';

const IP = process.env.AMBIT_IP ?? 'ip';
const [host, port] = (process.env.AMBIT_TARGET ?? '').split(':');
const [victimIp, victimPort] = (process.env.AMBIT_VICTIM ?? '').split(':');
const rounds = Number(process.env.AMBIT_ROUNDS ?? 200);
const result = { rounds, echoed: 0, stolen: 0, tuples: [], step: 'start' };
const added = [];
const lookalikes = [];

const timeout = setTimeout(() => finish('timed out'), Number(process.env.AMBIT_TIMEOUT_MS ?? 30_000));

function finish(error) {
  clearTimeout(timeout);
  for (const s of lookalikes) s.destroy();
  for (const a of added) {
    try { execFileSync(IP, ['addr', 'del', `${a}/32`, 'dev', 'lo']); } catch { /* already gone */ }
  }
  if (error) result.error = error;
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One ping-pong of 64 bytes, or false after 2 s without the whole echo. */
function pingPong(s, i) {
  const payload = Buffer.alloc(64, 97 + (i % 26));
  return new Promise((resolve) => {
    let got = 0;
    const timer = setTimeout(() => { s.off('data', onData); resolve(false); }, 2000);
    const onData = (d) => {
      got += d.length;
      if (got >= 64) { clearTimeout(timer); s.off('data', onData); resolve(true); }
    };
    s.on('data', onData);
    s.write(payload);
  });
}

/** A client socket bound to `local` ip:port connected to `remote`, and the accepted end. */
async function lookalike(localIp, localPort, remoteIp, remotePort) {
  const server = net.createServer((accepted) => {
    lookalikes.push(accepted);
    accepted.on('data', (d) => { result.stolen += d.length; });
    accepted.on('error', () => {});
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(remotePort, remoteIp, resolve); });
  if (process.env.AMBIT_ESCAPE_CGROUP) writeFileSync(process.env.AMBIT_ESCAPE_CGROUP, String(process.pid));
  const client = net.connect({ host: remoteIp, port: remotePort, localAddress: localIp, localPort });
  client.on('data', (d) => { result.stolen += d.length; });
  client.on('error', () => {});
  await new Promise((resolve, reject) => { client.once('connect', resolve); client.once('error', reject); });
  lookalikes.push(client);
  server.close();
}

try {
  const session = net.connect({ host, port: Number(port) });
  session.setNoDelay(true);
  await new Promise((resolve, reject) => { session.once('connect', resolve); session.once('error', reject); });
  // Let both ends enter the sockhash before the first write (it decides the path).
  await sleep(50);
  for (let i = 0; i < 10; i++) if (!(await pingPong(session, i))) throw new Error(`warm-up round ${i} got no echo`);

  result.step = 'find the proxy connection';
  const ss = execFileSync(IP, ['netns', 'exec', process.env.AMBIT_NODE_NETNS, 'ss', '-Htn', 'state', 'established', 'dst', victimIp, 'dport', '=', `:${victimPort}`], { encoding: 'utf8' });
  for (const line of ss.split('\n').filter(Boolean)) {
    const [local] = line.trim().split(/\s+/).slice(2);
    const cut = local.lastIndexOf(':');
    result.tuples.push({ ip: local.slice(0, cut), port: Number(local.slice(cut + 1)) });
  }
  if (result.tuples.length === 0) throw new Error(`no proxy connection to ${victimIp}:${victimPort} in ${process.env.AMBIT_NODE_NETNS}`);

  for (const a of new Set([victimIp, ...result.tuples.map((t) => t.ip)])) {
    execFileSync(IP, ['addr', 'add', `${a}/32`, 'dev', 'lo']);
    added.push(a);
  }
  result.step = 'look-alike connection';
  for (const t of result.tuples) await lookalike(t.ip, t.port, victimIp, Number(victimPort));
  await sleep(50);

  result.step = 'ping-pongs';
  for (let i = 0; i < rounds; i++) {
    if (await pingPong(session, i)) result.echoed++;
    else break;
  }
  session.destroy();
  await sleep(100);
  result.step = 'done';
  finish();
} catch (e) {
  finish(e instanceof Error ? e.message : String(e));
}
