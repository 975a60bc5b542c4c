/**
 * Test certificates for the HBONE tests, made with the `openssl` CLI: EC P-256 keys, a
 * self-signed CA, and leaf certificates with SPIFFE URI SANs (serverAuth + clientAuth,
 * as a workload SVID used on both ends).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Pem {
  key: string;
  cert: string;
}

export interface TestCa extends Pem {
  name: string;
  keyPath: string;
  certPath: string;
}

export interface Pki {
  dir: string;
  ca(name: string): TestCa;
  /** A leaf signed by `ca` with these URI SANs (none: no subjectAltName at all). */
  leaf(ca: TestCa, uris: string[], name?: string): Pem;
  cleanup(): void;
}

const REQ_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
O = ambit-test
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function createPki(): Pki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-hbone-pki-'));
  const config = path.join(dir, 'req.cnf');
  fs.writeFileSync(config, REQ_CONFIG);
  let n = 0;
  return {
    dir,
    ca(name) {
      const keyPath = path.join(dir, `${name}-ca.key`);
      const certPath = path.join(dir, `${name}-ca.crt`);
      openssl(['req', '-x509', '-config', config, '-extensions', 'v3_ca', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/O=${name}/CN=${name} test CA`], dir);
      return { name, keyPath, certPath, key: fs.readFileSync(keyPath, 'utf8'), cert: fs.readFileSync(certPath, 'utf8') };
    },
    leaf(ca, uris, name = `leaf${++n}`) {
      const base = path.join(dir, `${ca.name}-${name}-${n++}`);
      const ext = [
        '[leaf]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyAgreement',
        'extendedKeyUsage = serverAuth,clientAuth',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        ...(uris.length > 0 ? [`subjectAltName = ${uris.map((u) => `URI:${u}`).join(',')}`] : []),
        '',
      ].join('\n');
      fs.writeFileSync(`${base}.ext`, ext);
      openssl(['req', '-new', '-config', config, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/O=${ca.name}/CN=${name}`], dir);
      openssl(['x509', '-req', '-in', `${base}.csr`, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
        '-days', '1', '-extfile', `${base}.ext`, '-extensions', 'leaf', '-out', `${base}.crt`], dir);
      return { key: fs.readFileSync(`${base}.key`, 'utf8'), cert: fs.readFileSync(`${base}.crt`, 'utf8') };
    },
    cleanup() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
