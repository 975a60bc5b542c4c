/**
 * Informers (list + watch, with @kubernetes/client-node's cache) on the kinds the
 * controller reads. An informer that fails (the API server restarting, a CRD not installed
 * yet) is restarted after a delay and says so once per cause; `synced` resolves once its
 * first list succeeded.
 */
import { makeInformer, type KubernetesListObject, type KubernetesObject, type ObjectCache } from '@kubernetes/client-node';
import type { KubeClients } from './client.js';
import { errorMessage, statusCode } from '../errors.js';

export type EventKind = 'add' | 'update' | 'delete';

export interface Watched<T extends KubernetesObject> {
  readonly kind: string;
  readonly cache: ObjectCache<T>;
  readonly synced: Promise<void>;
  isSynced(): boolean;
  stop(): Promise<void>;
}

export interface InformerOptions<T extends KubernetesObject> {
  clients: KubeClients;
  kind: string;
  /** The list/watch path, e.g. /api/v1/pods. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  onEvent: (kind: EventKind, obj: T) => void;
  log: (level: 'info' | 'warn', message: string) => void;
  /** Default 2 s, doubling to 30 s while failing. */
  restartMs?: number;
}

export function watch<T extends KubernetesObject>(o: InformerOptions<T>): Watched<T> {
  let synced = false;
  let resolveSynced!: () => void;
  const syncedP = new Promise<void>((r) => { resolveSynced = r; });
  const list = async () => {
    const l = await o.list();
    if (!synced) {
      synced = true;
      // After the informer has put the listed objects in its cache.
      setImmediate(resolveSynced);
    }
    return l;
  };
  const informer = makeInformer<T>(o.clients.config, o.path, list);
  informer.on('add', (obj) => o.onEvent('add', obj));
  informer.on('update', (obj) => o.onEvent('update', obj));
  informer.on('delete', (obj) => o.onEvent('delete', obj));
  let stopped = false;
  let delay = o.restartMs ?? 2000;
  let lastCause = '';
  let timer: NodeJS.Timeout | undefined;
  informer.on('error', (err: unknown) => {
    if (stopped) return;
    const cause = statusCode(err) === 404 ? `${o.kind}: the API is not served (CRD not installed?)` : `${o.kind}: ${errorMessage(err)}`;
    if (cause !== lastCause) o.log('warn', `informer ${cause}; retrying every ${Math.round(delay / 1000)}s`);
    lastCause = cause;
    timer = setTimeout(() => {
      delay = Math.min(delay * 2, 30_000);
      void informer.start().catch(() => undefined);
    }, delay);
  });
  informer.on('connect', () => {
    if (lastCause) o.log('info', `informer ${o.kind}: watching again`);
    lastCause = '';
    delay = o.restartMs ?? 2000;
  });
  void informer.start().catch(() => undefined);
  return {
    kind: o.kind,
    cache: informer,
    synced: syncedP,
    isSynced: () => synced,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await informer.stop();
    },
  };
}
