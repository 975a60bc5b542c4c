/**
 * New mTLS handshakes against an HBONE listener, run as its own process by the mesh
 * benchmark: `node handshakes.js <host> <port> <ca dir> <trust domain> <seconds> <concurrency>`
 * prints `{ handshakes, errors }`. A handshake counts once the server's first HTTP/2
 * frame arrives: the server verified the client certificate and its SPIFFE ID and
 * accepted the session. Each connection is then closed. Bounded by `seconds`.
 */
import tls from 'node:tls';
import { CertificateAuthority } from '../../identity/ca.js';
import { workloadId } from '../../identity/spiffe.js';

const [host, portArg, caDir, trustDomain, secondsArg, concurrencyArg] = process.argv.slice(2);
if (!host || !portArg || !caDir || !trustDomain || !secondsArg || !concurrencyArg) {
  process.stderr.write('usage: handshakes.js <host> <port> <ca dir> <trust domain> <seconds> <concurrency>\n');
  process.exit(2);
}
const ca = await CertificateAuthority.loadOrCreate(caDir, { trustDomain });
const cert = await ca.issueWorkloadCertificate({ identity: workloadId(trustDomain, 'bench', 'client') });
const context = tls.createSecureContext({
  key: cert.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert.certChainPem, ca: ca.certPem,
  minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3',
});
const end = performance.now() + Number(secondsArg) * 1000;
let handshakes = 0;
let errors = 0;

const once = (): Promise<void> => new Promise((resolve) => {
  const s = tls.connect({ host, port: Number(portArg), secureContext: context, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, rejectUnauthorized: true });
  let done = false;
  const finish = (good: boolean) => {
    if (done) return;
    done = true;
    if (good) handshakes++;
    else errors++;
    s.destroy();
    resolve();
  };
  s.once('data', () => finish(true));
  s.once('error', () => finish(false));
  s.once('close', () => finish(false));
  s.setTimeout(5_000, () => finish(false));
});

await Promise.all(Array.from({ length: Number(concurrencyArg) }, async () => {
  while (performance.now() < end) await once();
}));
process.stdout.write(`${JSON.stringify({ handshakes, errors })}\n`);
