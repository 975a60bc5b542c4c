/**
 * The controller: informers → mesh model → per-node config streams, the CA and CSRs,
 * FilterBinding status and Events. `startController` returns once the CA is loaded and
 * the gRPC and admin listeners are up; `ready` says when the informers have synced.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import type { KubernetesListObject, KubernetesObject, V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { controlplane } from '@ambit/runtime';
import { GROUP, PLURAL, VERSION, type FilterBinding } from './crd/schema.js';
import { Distributor } from './distribution/server.js';
import { ControllerError, errorMessage } from './errors.js';
import { EventRecorder } from './events.js';
import { loadOrCreateCa, publishRoots } from './identity/ca-secret.js';
import { signCsr } from './identity/csr.js';
import { NodeAuthenticator } from './identity/node-auth.js';
import { kubeClients, type KubeClients } from './kube/client.js';
import { LeaderElector } from './kube/leader.js';
import { watch, type EventKind, type Watched } from './kube/informers.js';
import { MeshModel } from './model/mesh.js';
import { desiredStatus, writeStatus } from './status.js';
import type { AuthorizationPolicy } from './translate/authz.js';
import { checkFilters, type FilterCheck } from './translate/filterbinding.js';
import { mapHttpRoute, type HttpRoute } from './translate/httproute.js';
import { writeRouteStatus } from './route-status.js';

export interface ControllerOptions {
  kubeconfig?: string;
  namespace: string;
  grpcAddress: string;
  grpcPort: number;
  adminAddress: string;
  adminPort: number;
  caSecret: string;
  rootConfigMap: string;
  trustDomain: string;
  nodeServiceAccount: string;
  rootNamespace: string;
  serverNames: string[];
  filterRoot: string;
  certTtlMs: number;
  /** How long changes are gathered before a push. Default 10 ms. */
  pushDelayMs?: number;
  /**
   * Leader election on a Lease in `namespace`: only the leader writes (the CA Secret, the
   * root ConfigMap, statuses, Events); every replica serves config streams and CSRs.
   * `false`: this replica writes alone (a single replica, or tests).
   */
  leaderElection: false | { lease: string; identity?: string; leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  log: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface RunningController {
  readonly grpcPort: number;
  readonly adminPort: number;
  readonly model: MeshModel;
  readonly distributor: Distributor;
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

export const DEFAULTS = {
  namespace: 'ambit-system', grpcAddress: '0.0.0.0', grpcPort: 15012, adminAddress: '0.0.0.0', adminPort: 15014,
  caSecret: 'ambit-ca', rootConfigMap: 'ambit-ca-root', trustDomain: 'cluster.local', nodeServiceAccount: 'ambit-system:ambit-node',
  rootNamespace: 'ambit-system', certTtlMs: 86_400_000,
} as const;

export async function startController(o: ControllerOptions, clients: KubeClients = kubeClients(o.kubeconfig)): Promise<RunningController> {
  if (!/^[^:]+:[^:]+$/.test(o.nodeServiceAccount)) throw new ControllerError('AMBIT_ERR_CONTROLLER_FLAGS', `--node-service-account takes <namespace>:<name>, got ${o.nodeServiceAccount}`);
  const identity = o.leaderElection ? (o.leaderElection.identity ?? `${process.env.POD_NAME ?? os.hostname()}_${randomUUID().slice(0, 8)}`) : os.hostname();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const writes = new Counter({ name: 'ambit_controller_writes_total', help: 'Writes to the API server by this replica (only the leader writes)', labelNames: ['kind'], registers: [registry] });
  const leaderGauge = new Gauge({ name: 'ambit_controller_leader', help: '1 while this replica is the leader', registers: [registry] });
  // What a new leader does once everything below is set up (statuses, roots).
  let onLeader = (): void => undefined;
  const elector = o.leaderElection
    ? new LeaderElector({
      coordination: clients.coordination, namespace: o.namespace, name: o.leaderElection.lease, identity,
      leaseDurationMs: o.leaderElection.leaseDurationMs, renewDeadlineMs: o.leaderElection.renewDeadlineMs, retryPeriodMs: o.leaderElection.retryPeriodMs,
      onStartedLeading: () => { leaderGauge.set(1); onLeader(); },
      onStoppedLeading: () => leaderGauge.set(0),
      log: (level, message) => o.log(level, message),
    })
    : undefined;
  if (!elector) leaderGauge.set(1);
  elector?.start();
  const isLeader = () => elector?.isLeader ?? true;
  let ca;
  try {
    ca = await loadOrCreateCa(clients.core, o.namespace, o.caSecret, o.trustDomain, (msg) => o.log('info', msg), isLeader,
      Math.min(500, o.leaderElection ? o.leaderElection.retryPeriodMs : 500), () => writes.inc({ kind: 'Secret' }));
  } catch (e) {
    await elector?.stop();
    throw e;
  }
  const roots = ca.rootsPem();
  // Node proxies need the roots before they can connect: the leader publishes them before serving.
  if (isLeader() && await publishRoots(clients.core, o.namespace, o.rootConfigMap, roots)) writes.inc({ kind: 'ConfigMap' });
  const publish = () => {
    if (!isLeader()) return;
    publishRoots(clients.core, o.namespace, o.rootConfigMap, roots).then((wrote) => { if (wrote) writes.inc({ kind: 'ConfigMap' }); }, (e: unknown) => o.log('warn', errorMessage(e)));
  };

  const m = {
    nodes: new Gauge({ name: 'ambit_controller_connected_nodes', help: 'Node proxies with an open config stream', registers: [registry] }),
    acks: new Counter({ name: 'ambit_controller_config_acks_total', help: 'Config responses acknowledged by node proxies', registers: [registry] }),
    nacks: new Counter({ name: 'ambit_controller_config_nacks_total', help: 'Config responses rejected by node proxies', registers: [registry] }),
    ackLatency: new Histogram({ name: 'ambit_controller_config_ack_seconds', help: 'From sending a config response to its acknowledgement', buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5], registers: [registry] }),
    resources: new Gauge({ name: 'ambit_controller_resources', help: 'Resources derived from the cluster', registers: [registry] }),
    csr: new Counter({ name: 'ambit_controller_csr_total', help: 'Certificate requests by result', labelNames: ['result'], registers: [registry] }),
  };

  const events = new EventRecorder(clients.core, identity, (msg) => o.log('warn', msg), isLeader, () => writes.inc({ kind: 'Event' }));
  const model = new MeshModel({ trustDomain: o.trustDomain, rootNamespace: o.rootNamespace, certTtlMs: o.certTtlMs, roots }, {
    report(kind, obj, lines) {
      const apiVersion = kind === 'AuthorizationPolicy' ? 'security.istio.io/v1' : 'gateway.networking.k8s.io/v1';
      o.log('warn', `${kind} ${obj.metadata.namespace}/${obj.metadata.name}: ${lines.join('; ')}`);
      void events.warn({ apiVersion, kind, metadata: obj.metadata }, 'UnsupportedField', lines.join('\n'));
    },
  });

  // Node rejections: binding resource name → node → why.
  const rejections = new Map<string, Map<string, string>>();
  const statusDirty = new Set<string>();
  let statusTimer: NodeJS.Timeout | undefined;
  const markStatus = (fbKey: string) => {
    statusDirty.add(fbKey);
    statusTimer ??= setTimeout(() => void flushStatus(), 100);
  };
  const fbRejections = (fbKey: string): Map<string, string> => {
    const out = new Map<string, string>();
    for (const [binding, byNode] of rejections) {
      if (binding === `fb/${fbKey}` || binding.startsWith(`fb/${fbKey}/`)) for (const [n, why] of byNode) out.set(n, why);
    }
    return out;
  };
  const flushStatus = async () => {
    statusTimer = undefined;
    // A follower keeps what is due: it is written if this replica becomes the leader.
    if (!isLeader()) return;
    const keys = [...statusDirty];
    statusDirty.clear();
    for (const key of keys) {
      const entry = model.filterBindings.get(key);
      if (!entry) continue;
      const t = entry.fb.spec.target?.service;
      const missing = t && !model.services.has(`${entry.fb.metadata.namespace}/${t}`) ? `no Service ${t} in namespace ${entry.fb.metadata.namespace}` : undefined;
      const desired = desiredStatus(entry.check, missing, fbRejections(key));
      if (!desired) continue;
      try {
        if (await writeStatus(clients.custom, entry.fb, desired) === 'written') writes.inc({ kind: 'FilterBinding/status' });
      } catch (e) {
        o.log('warn', errorMessage(e));
      }
    }
  };

  const auth = new NodeAuthenticator(clients.authn, o.nodeServiceAccount, (ns, name) => model.pods.get(`${ns}/${name}`));
  const podsOnNode = (node: string): Iterable<V1Pod> => model.podsOn(node);
  const distributor = new Distributor(model, auth, (caller, csr, ttlMs) => {
    try {
      const r = signCsr({ ca, certTtlMs: o.certTtlMs, nodeServiceAccount: o.nodeServiceAccount, podsOnNode }, caller, csr, ttlMs);
      m.csr.inc({ result: 'signed' });
      return r;
    } catch (e) {
      m.csr.inc({ result: 'refused' });
      throw e;
    }
  }, {
    ack(node, _version, latencyMs) {
      m.acks.inc();
      if (latencyMs !== undefined) m.ackLatency.observe(latencyMs / 1000);
      for (const [binding, byNode] of rejections) {
        if (!byNode.delete(node)) continue;
        if (byNode.size === 0) rejections.delete(binding);
        const origin = model.bindingOrigin(binding);
        if (origin?.kind === 'FilterBinding') markStatus(`${origin.namespace}/${origin.name}`);
      }
    },
    nack(node, detail: controlplane.ErrorDetail) {
      m.nacks.inc();
      o.log('warn', `node ${node} rejected its config: ${detail.code}: ${detail.message}`);
      for (const issue of detail.issues) {
        if (!issue.resource.startsWith('binding/')) continue;
        const binding = issue.resource.slice('binding/'.length);
        let byNode = rejections.get(binding);
        if (!byNode) rejections.set(binding, (byNode = new Map()));
        const line = `${issue.pointer || '/'}: ${issue.message}`;
        const prev = byNode.get(node);
        byNode.set(node, prev && !prev.includes(line) ? `${prev}; ${line}` : line);
        const origin = model.bindingOrigin(binding);
        if (origin?.kind === 'FilterBinding') markStatus(`${origin.namespace}/${origin.name}`);
        else if (origin?.kind === 'AuthorizationPolicy') {
          const ap = [...model.authz.values()].find((a) => a.metadata.namespace === origin.namespace);
          if (ap) void events.warn({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: ap.metadata }, 'RejectedByNode', `node ${node}: ${line}`);
        }
      }
    },
    connected(node) { m.nodes.inc(); o.log('info', `node ${node} connected`); },
    disconnected(node) { m.nodes.dec(); o.log('info', `node ${node} disconnected`); },
    log: (level, message) => o.log(level, message),
  });

  // Changes are gathered for pushDelayMs, then pushed to every stream at once.
  let pushTimer: NodeJS.Timeout | undefined;
  const schedulePush = () => {
    pushTimer ??= setTimeout(() => {
      pushTimer = undefined;
      distributor.push();
      m.resources.set(model.table.size);
    }, o.pushDelayMs ?? 10);
  };

  const informers: Watched<KubernetesObject>[] = [];
  const add = <T extends KubernetesObject>(kind: string, path: string, list: () => Promise<KubernetesListObject<T>>, on: (k: EventKind, obj: T) => void) => {
    informers.push(watch<T>({
      clients, kind, path, list,
      onEvent: (k, obj) => {
        try {
          on(k, obj);
        } catch (e) {
          o.log('error', `${kind} ${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}: ${errorMessage(e)}`);
        }
        schedulePush();
      },
      log: (level, msg) => o.log(level, msg),
    }) as unknown as Watched<KubernetesObject>);
  };
  const custom = <T>(group: string, version: string, plural: string) => async () =>
    (await clients.custom.listClusterCustomObject({ group, version, plural })) as KubernetesListObject<T & KubernetesObject>;

  add<V1Namespace>('Namespace', '/api/v1/namespaces', () => clients.core.listNamespace(), (k, x) => model.namespace(k, x));
  add<V1Node>('Node', '/api/v1/nodes', () => clients.core.listNode(), (k, x) => model.node(k, x));
  add<V1Service>('Service', '/api/v1/services', () => clients.core.listServiceForAllNamespaces(), (k, x) => {
    model.service(k, x);
    for (const [key, f] of model.filterBindings) if (f.fb.metadata.namespace === x.metadata?.namespace && f.fb.spec.target?.service === x.metadata?.name) markStatus(key);
  });
  add<V1Pod>('Pod', '/api/v1/pods', () => clients.core.listPodForAllNamespaces(), (k, x) => model.pod(k, x));
  add<AuthorizationPolicy & KubernetesObject>('AuthorizationPolicy', '/apis/security.istio.io/v1/authorizationpolicies',
    custom<AuthorizationPolicy>('security.istio.io', 'v1', 'authorizationpolicies'), (k, x) => model.authorizationPolicy(k, x));
  add<HttpRoute & KubernetesObject>('HTTPRoute', '/apis/gateway.networking.k8s.io/v1/httproutes',
    custom<HttpRoute>('gateway.networking.k8s.io', 'v1', 'httproutes'), (k, x) => {
      model.httpRoute(k, x);
      if (k !== 'delete') routeStatus(x);
    });
  function routeStatus(x: HttpRoute): void {
    if (!isLeader()) return;
    const mapped = mapHttpRoute(x, (name) => model.services.get(`${x.metadata.namespace}/${name}`));
    writeRouteStatus(clients.custom, x, mapped).then((wrote) => { if (wrote) writes.inc({ kind: 'HTTPRoute/status' }); }, (e: unknown) => o.log('warn', errorMessage(e)));
  }
  // FilterBindings: checked (packages, pins, configs) per generation, then put in the model.
  const checks = new Map<string, { generation: number | undefined; check: Promise<FilterCheck>; fb: FilterBinding }>();
  add<FilterBinding & KubernetesObject>('FilterBinding', `/apis/${GROUP}/${VERSION}/${PLURAL}`, custom<FilterBinding>(GROUP, VERSION, PLURAL), (k, fb) => {
    const key = `${fb.metadata.namespace}/${fb.metadata.name}`;
    if (k === 'delete') {
      checks.delete(key);
      model.filterBinding('delete', fb, undefined);
      return;
    }
    const c = checks.get(key);
    if (c && c.generation === fb.metadata.generation) {
      // Same spec (a status or metadata update): keep the check (or wait for it).
      c.fb = fb;
      if (model.filterBindings.has(key)) model.filterBinding(k, fb, model.filterBindings.get(key)!.check);
      return;
    }
    // A new spec: nodes keep what they have until it is checked.
    const mine = { generation: fb.metadata.generation, check: checkFilters(fb, o.filterRoot), fb };
    checks.set(key, mine);
    void mine.check.then((check) => {
      if (checks.get(key) !== mine) return;
      model.filterBinding('update', mine.fb, check);
      markStatus(key);
      schedulePush();
    });
  });

  const ready = Promise.all(informers.slice(0, 4).map((i) => i.synced)).then(() => undefined);

  const server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_permit_without_calls': 1 });
  distributor.register(server);
  const serving = ca.issueServerCertificate({ dnsNames: [...o.serverNames, 'localhost'], ipAddresses: ['127.0.0.1'], ttlMs: 365 * 86_400_000 });
  const grpcPort = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${o.grpcAddress}:${o.grpcPort}`, grpc.ServerCredentials.createSsl(null, [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certChainPem) }], false),
      (e, port) => (e ? reject(new ControllerError('AMBIT_ERR_CONTROLLER_FLAGS', `cannot listen on ${o.grpcAddress}:${o.grpcPort}: ${e.message}`)) : resolve(port)));
  });
  o.log('info', `gRPC (TLS) on ${o.grpcAddress}:${grpcPort}; serving certificate for ${o.serverNames.join(', ')}, valid until ${serving.notAfter.toISOString()}`);

  let isReady = false;
  void ready.then(() => {
    isReady = true;
    o.log('info', `informers synced: ${model.pods.size} pods, ${model.services.size} services, ${model.namespaces.size} namespaces`);
  });
  const admin = http.createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain') => { res.writeHead(code, { 'content-type': type }); res.end(body); };
    if (req.url === '/healthz') return send(200, 'ok\n');
    if (req.url === '/ready') return isReady ? send(200, 'ready\n') : send(503, `informers syncing: ${informers.filter((i) => !i.isSynced()).map((i) => i.kind).join(', ')}\n`);
    if (req.url === '/metrics') {
      void registry.metrics().then((body) => send(200, body, registry.contentType));
      return;
    }
    if (req.url === '/debug/nodes') return send(200, `${JSON.stringify({ systemVersion: distributor.systemVersion, identity, leader: isLeader(), nodes: distributor.connectedNodes() }, null, 2)}\n`, 'application/json');
    send(404, 'not found: /healthz, /ready, /metrics, /debug/nodes\n');
  });
  await new Promise<void>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(o.adminPort, o.adminAddress, () => resolve());
  });
  const adminPort = (admin.address() as { port: number }).port;

  // A new leader catches up on what followers leave unwritten: the roots, every
  // FilterBinding's status and every HTTPRoute's.
  onLeader = () => {
    publish();
    void ready.then(() => {
      if (!isLeader()) return;
      for (const key of model.filterBindings.keys()) markStatus(key);
      for (const r of model.routes.values()) routeStatus(r as HttpRoute & KubernetesObject);
    });
  };
  if (isLeader()) onLeader();

  return {
    grpcPort, adminPort, model, distributor, ready,
    async close() {
      await elector?.stop();
      if (pushTimer) clearTimeout(pushTimer);
      if (statusTimer) clearTimeout(statusTimer);
      await Promise.all(informers.map((i) => i.stop().catch(() => undefined)));
      server.forceShutdown();
      await new Promise<void>((r) => admin.close(() => r()));
    },
  };
}
