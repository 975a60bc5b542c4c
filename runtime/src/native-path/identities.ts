/**
 * Keeps the native data path's mesh TLS material in step with the node's certificate
 * store: the trust bundle and the current certificate chain and key of every identity the
 * store holds (the node's local workloads). Handed over at start, then again on every
 * issue, rotation, removal and trust bundle change; the native side swaps the whole set
 * in, so new HBONE handshakes use it and open connections keep what they were made with.
 *
 * The material crosses as JSON into `NativeProxy.setIdentities` and nowhere else: it is
 * never logged, and a refusal names the identity at fault, not the key.
 */
import type { CertificateStore } from '../identity/store.js';
import type { NativeProxyHandle } from '../filters/wasmtime/native.js';
import type { Telemetry } from '../telemetry/types.js';

export interface MeshTlsSpec {
  roots: string;
  identities: Array<{ identity: string; chain: string; key: string }>;
}

/** What the native side is given: every identity the store currently holds a certificate for. */
export function meshTlsSpec(store: CertificateStore): MeshTlsSpec {
  const identities: MeshTlsSpec['identities'] = [];
  for (const identity of store.identities()) {
    const m = store.currentTlsMaterial(identity);
    if (m) identities.push({ identity, chain: m.cert, key: m.key });
  }
  return { roots: store.trustBundlePem(), identities };
}

/** Hands the store's material over now and on every change; returns the unsubscribe. */
export function syncIdentities(native: NativeProxyHandle, store: CertificateStore, telemetry: Telemetry): () => void {
  const push = (): void => {
    try {
      native.setIdentities(JSON.stringify(meshTlsSpec(store)));
    } catch (e) {
      telemetry.error(`hbone: the native data path refused the mesh certificates, keeping the previous ones: ${(e as Error).message}`);
    }
  };
  store.on('issued', push).on('rotated', push).on('removed', push);
  store.trustBundle.on('change', push);
  push();
  return () => {
    store.off('issued', push).off('rotated', push).off('removed', push);
    store.trustBundle.off('change', push);
  };
}
