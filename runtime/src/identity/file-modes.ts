/**
 * Owner and mode checks for the mesh CA's folder and files, at load: whoever can read the CA
 * key can mint any identity in the mesh, and whoever can write the folder or a certificate can
 * swap the trust anchor. Refused (AMBIT_ERR_IDENTITY, reason `unsafe-file`), each naming the
 * path and the command that fixes it:
 *
 * - a key file readable or writable by group or others (`chmod 600 <key>`);
 * - a folder or certificate file writable by group or others (`chmod 700` / `chmod 644`);
 * - any of them owned by a user other than the proxy's or root (`chown`).
 *
 * Symlinks are followed (Kubernetes mounts secrets through them): the file they lead to counts.
 */
import { stat } from 'node:fs/promises';
import { IdentityError } from './errors.js';

export type CaPathKind = 'key' | 'certificate' | 'folder';

const FIX_MODE: Record<CaPathKind, string> = { key: '600', certificate: '644', folder: '700' };

/** Throws IdentityError('unsafe-file') when `file` could be read (a key) or changed by another user. */
export async function checkCaPath(file: string, kind: CaPathKind): Promise<void> {
  let st;
  try {
    st = await stat(file);
  } catch {
    return; // missing: the loader says so in its own words
  }
  const uid = process.geteuid?.() ?? st.uid;
  const mode = st.mode & 0o777;
  const what = kind === 'key' ? 'CA key' : kind === 'folder' ? 'CA folder' : 'CA certificate';
  let why: string | undefined;
  if (st.uid !== uid && st.uid !== 0) {
    why = `it is owned by uid ${st.uid}, not by the proxy's user (uid ${uid}) or root: chown ${uid} ${file}`;
  } else if (kind === 'key' && (mode & 0o077) !== 0) {
    why = `it is readable or writable by group or others (mode ${mode.toString(8).padStart(3, '0')}), so anyone on the node could mint mesh identities: chmod 600 ${file}`;
  } else if (kind !== 'key' && (mode & 0o022) !== 0) {
    why = `it is writable by group or others (mode ${mode.toString(8).padStart(3, '0')}), so another user could replace the mesh's trust: chmod ${FIX_MODE[kind]} ${file}`;
  }
  if (why) throw new IdentityError('unsafe-file', `refusing ${what} ${file}: ${why}`);
}
