/**
 * The mesh config of the node proxy (`ambit run --config mesh.yaml`), defined once with
 * TypeBox: the TypeScript types below are `Static<>` of the same schema that validates
 * the file, and `meshConfigJsonSchema()` (in ./load.ts) hands it to editors and
 * `ambit schema`.
 *
 * Defaults are stated in the schema (`default:`) and filled in by ajv (`useDefaults`),
 * so the types describe a config *after* loading: a defaulted property is never
 * undefined. A few defaults depend on other values and cannot be said in JSON Schema;
 * the loader fills them in and they stay optional in the types:
 * - `services[].ports[].targetPort` — the service port;
 * - `workloads[].node` — this node (`node`);
 * - `proxy.workers` — the number of CPU cores (chosen by the proxy at start).
 *
 * Every object rejects unknown properties: a misspelt key in YAML is an error, not a
 * silently ignored setting.
 */
import { Type, type Static, type TSchema, type SchemaOptions } from '@sinclair/typebox';
import { FilterSourceSchema } from './registry/schema.js';

/** A string enum as `{ type: 'string', enum: [...] }` (readable errors, editor completion) typed as a union. */
function StringEnum<const T extends readonly string[]>(values: T, options: SchemaOptions = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

function Obj<T extends Record<string, TSchema>>(properties: T, options: SchemaOptions = {}) {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

const Port = (options: SchemaOptions = {}) => Type.Integer({ minimum: 1, maximum: 65535, ...options });
/** A port name as Kubernetes allows it (IANA service name): lower-case letters, digits and single dashes, at least one letter, at most 15 characters. */
const PortName = (options: SchemaOptions = {}) => Type.String({ minLength: 1, maxLength: 15, pattern: '^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$', ...options });
const Millis = (def: number, description: string) => Type.Integer({ minimum: 0, default: def, description });

/** DNS-1123 label, like a Kubernetes service name or namespace (no dots: `name.namespace` must be unambiguous). */
const Name = (description: string) =>
  Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', description });
const Namespace = Type.String({
  minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', default: 'default',
  description: 'Kubernetes-style namespace. Default `default`.',
});
/** An IPv4 or IPv6 address (checked with node:net isIP after the schema). */
const Ip = (description: string, options: SchemaOptions = {}) => Type.String({ minLength: 2, maxLength: 45, description, ...options });
const Labels = (description: string, options: SchemaOptions = {}) =>
  Type.Record(Type.String({ minLength: 1 }), Type.String(), { description, ...options });
/** `name.namespace`: how bindings and targets name a service or a workload. */
const QualifiedName = (description: string) =>
  Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?$', description });

export const PROTOCOLS = ['auto', 'http', 'http2', 'tcp'] as const;
export const LOAD_BALANCERS = ['round-robin', 'least-request'] as const;
export const ENGINES = ['v8', 'wasmtime', 'auto'] as const;
export const DATA_PATHS = ['auto', 'native', 'node'] as const;
export const DIRECTIONS = ['inbound', 'outbound'] as const;
export const FAILURE_POLICIES = ['fail-closed', 'fail-open'] as const;
export const INSTANCE_STRATEGIES = ['pooled', 'per-request'] as const;

export const LimitsSchema = Obj({
  maxHeaderBytes: Type.Integer({
    minimum: 1024, maximum: 1 << 20, default: 65536,
    description: 'Largest request or response head (request line + headers) accepted, in bytes; larger → 431. Default 64 KiB (Envoy allows 60 KiB).',
  }),
  headersTimeoutMs: Millis(10_000, 'Time a downstream client has to send a whole request head; 0: none. Default 10 s (slowloris guard).'),
  requestTimeoutMs: Millis(0, 'Time a whole downstream request (head, body and response) may take; 0: none. Default 0, like Envoy\'s request_timeout: streams and long polls are bounded by the per-service requestTimeoutMs and by idleTimeoutMs instead.'),
  idleTimeoutMs: Millis(60_000, 'An HTTP connection (downstream or pooled upstream) with no request in flight for this long is closed; 0: never. Default 60 s. L4 (TCP) splices are not cut for idling.'),
  retryBufferBytes: Type.Integer({
    minimum: 0, default: 65536,
    description: 'Request bodies up to this size are buffered so that the request can be retried; larger ones stream and are not retried. Default 64 KiB.',
  }),
  maxAttempts: Type.Integer({
    minimum: 1, maximum: 10, default: 5,
    description: 'Most attempts (first try + retries) a request gets, whatever filters ask. Default 5.',
  }),
  sniffTimeoutMs: Millis(5000, 'On a port with protocol auto, time the client has to send its first bytes before the connection is handled as TCP. Default 5 s.'),
  drainTimeoutMs: Millis(25_000, 'On shutdown or config reload, how long in-flight requests on the old listeners and chains may run before they are cut. Default 25 s: under Kubernetes\' default 30 s grace period.'),
}, { default: {}, description: 'Limits on downstream requests and connections.' });

export const OutboundListenerSchema = Obj({
  address: Ip('Address to listen on. Default 127.0.0.1.', { default: '127.0.0.1' }),
  port: Port({ default: 15001, description: 'Default 15001 (Istio\'s outbound capture port).' }),
  target: Type.Optional(Type.String({
    minLength: 3,
    description: 'Original destination to use when a connection has none (no SO_ORIGINAL_DST: no capture, e.g. a client pointed at the listener by hand): `<ip>:<port>`, `[<ipv6>]:<port>` or `<service>.<namespace>:<port>`.',
  })),
}, { default: {}, description: 'The listener that captured outbound connections of local workloads arrive on.' });

export const ProxySchema = Obj({
  outbound: OutboundListenerSchema,
  inbound: Obj({
    address: Ip('Address to listen on. Default 127.0.0.1; set 0.0.0.0 (or the node address) to take traffic from other nodes.', { default: '127.0.0.1' }),
    port: Port({ default: 15006, description: 'Default 15006. Plaintext: what arrives here carries no peer identity (mTLS traffic from other nodes arrives on proxy.hbone).' }),
  }, { default: {}, description: 'The listener for connections to local workloads.' }),
  hbone: Obj({
    address: Ip('Address to listen on. Default 0.0.0.0: other nodes must reach it.', { default: '0.0.0.0' }),
    port: Port({ default: 15008, description: 'Default 15008 (the HBONE port of Istio ambient).' }),
  }, { default: {}, description: 'HBONE: mTLS (TLS 1.3) HTTP/2 CONNECT tunnels between node proxies, as Istio ambient speaks it. Other nodes dial `<workload ip>:<hbonePort>` and this listener presents the certificate of the workload whose address was dialed: on a node, capture (or the listener bound to 0.0.0.0 where the workloads\' addresses are local) brings those connections here. The listener runs only when `identity` is set. Opening a tunnel (TCP, TLS, HTTP/2 and the CONNECT\'s answer) is bounded by the route\'s `connectTimeoutMs`.' }),
  admin: Obj({
    address: Ip('Default 127.0.0.1.', { default: '127.0.0.1' }),
    port: Port({ default: 15000, description: 'Default 15000.' }),
  }, { default: {}, description: 'Admin API: stats, config dump, readiness.' }),
  engine: StringEnum(ENGINES, { default: 'auto', description: 'WebAssembly engine for filters. `wasmtime`: the native engine (`@ambit/native`), an error if it cannot load. `v8`: Node\'s own WebAssembly in worker threads. `auto`: wasmtime where the native binding loads, else v8 (the reason is logged). Default auto.' }),
  wasmtime: Obj({
    threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'Threads running filter calls. Default: the number of CPU cores.' })),
    epochTickMs: Type.Number({ minimum: 0.1, maximum: 1000, default: 1, description: 'Epoch tick: a call past its deadline is stopped within one tick. Default 1 ms.' }),
    maxInstances: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000, description: 'Component instances the pooling allocator reserves slots for (warm and per-request together). Default 1000.' }),
    maxMemoryPages: Type.Integer({ minimum: 1, maximum: 65536, default: 16384, description: 'Largest memory cap a binding may ask for, in 64 KiB pages (each instance slot reserves 4 GiB of address space either way, so that filter code runs without bounds checks). Default 16384 (1 GiB).' }),
  }, { default: {}, description: 'Settings of the wasmtime engine.' }),
  dataPath: StringEnum(DATA_PATHS, { default: 'auto', description: 'Which code serves connections. `native`: Rust threads inside `@ambit/native` (tokio, hyper, rustls for HBONE), filters called inline on the wasmtime engine; it needs the addon built with the data path, the wasmtime engine (`engine: wasmtime` or `auto`) and one process: it uses the cores through its own threads (`native.threads`), so it refuses `workers` (or `--workers`) above 1. `node`: the Node.js data path, which uses more cores through `node:cluster` workers. `auto`: native where it can serve and no binding sets `exposeErrors` (not served on the native path yet), else node, with one log line saying why; a config with `identity` (mTLS between nodes, served by the native path only) runs native or stops with a coded error saying why; so `workers` above 1 picks node, and without `workers` a node runs one process on the native path, or one per core on the node path. `/config_dump` shows the choice (`dataPath.kind`, and `dataPath.reason` when auto picked node). The environment variable AMBIT_DATA_PATH (auto, native or node) overrides it. Default auto.' }),
  native: Obj({
    threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'Data-path threads (one tokio runtime each, accepts spread by SO_REUSEPORT). Default: the number of CPU cores.' })),
    maxConnections: Type.Integer({ minimum: 1, maximum: 10_000_000, default: 65_536, description: 'Connections one listener holds open at most; beyond, new ones are closed at once (AMBIT_ERR_CONNECTION_LIMIT in the access log). Default 65536.' }),
  }, { default: {}, description: 'Settings of the native data path (`dataPath: native`, or `auto` when it picks native).' }),
  workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024, description: 'Proxy processes sharing the listeners (`node:cluster` workers, each on the node data path). Above 1, `dataPath: auto` picks the node data path and `dataPath: native` is refused (it uses threads instead: `native.threads`). Default: one process when the native data path serves, else the number of CPU cores.' })),
  filterThreads: Type.Integer({
    minimum: 1, maximum: 64, default: 2,
    description: 'Threads per proxy process that run filters on the V8 engine. With 2, one can be stopped (a filter past its deadline) while the other serves. Default 2.',
  }),
  limits: LimitsSchema,
}, { default: {}, description: 'Listeners, engine and limits of this node proxy.' });

export const WorkloadSchema = Obj({
  name: Name('Workload (pod) name, unique within its namespace.'),
  namespace: Namespace,
  serviceAccount: Type.String({ minLength: 1, default: 'default', description: 'Identity: spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>. Default `default`.' }),
  address: Ip('The workload\'s IPv4 or IPv6 address, unique in the mesh.'),
  node: Type.Optional(Type.String({ minLength: 1, description: 'Node the workload runs on. Default: this node.' })),
  labels: Labels('Labels, matched by service selectors.', { default: {} }),
  ports: Type.Optional(Type.Array(Port(), {
    uniqueItems: true,
    description: 'Ports the workload serves. When given, a service selecting this workload only sends it traffic for target ports in this list (like a pod\'s container ports). Default: any port.',
  })),
  namedPorts: Type.Optional(Type.Record(PortName(), Port(), {
    description: 'The workload\'s ports by name (a pod\'s named container ports, e.g. `{ http: 8080 }`): a service port whose `targetPort` is a name reaches this workload at the port of that name. Default: none.',
  })),  cgroup: Type.Optional(Type.String({
    minLength: 1,
    description: 'The workload\'s cgroup (v2), relative to the cgroup2 mount (`kubepods/pod<uid>`) or absolute. A workload of this node with a cgroup is enrolled in capture: its connects to meshed destinations go through the proxy. In Kubernetes, derived from the pod UID.',
  })),
  podUid: Type.Optional(Type.String({
    pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
    description: 'Kubernetes pod UID: enrolls the workload in capture like `cgroup`, with the cgroup found from the kubelet\'s layouts (cgroupfs `kubepods/[burstable|besteffort/]pod<uid>`, systemd `kubepods.slice/…-pod<uid_>.slice`). `cgroup` wins when both are set.',
  })),
});

export const ServicePortSchema = Obj({
  port: Port({ description: 'Port clients connect to (on the VIP, or with the service name).' }),
  targetPort: Type.Optional(Type.Union([Port(), PortName()], {
    description: 'Port on the endpoints: a number, or the name of a port in the selected workloads\' `namedPorts` (a Kubernetes named targetPort), resolved per workload as kube-proxy does: a selected workload without a port of that name is not an endpoint of this port. Default: `port`.',
  })),
  protocol: StringEnum(PROTOCOLS, { default: 'auto', description: '`auto`: HTTP is parsed only where an HTTP filter is bound (the first bytes tell HTTP/1.1, HTTP/2 or other), else bytes are spliced; `http`/`http2`: always parsed (per-request metrics, upstream-failure retries, Host routing); `tcp`: always spliced, never runs HTTP filters. Default auto.' }),
  name: Type.Optional(Type.String({ minLength: 1, description: 'Port name, unique within the service.' })),
});

export const EndpointSchema = Obj({
  address: Ip('IPv4 or IPv6 address of an upstream outside the workload list.'),
  port: Type.Optional(Port({ description: 'Default: the service port\'s targetPort. Only for single-port services.' })),
});

export const OutlierDetectionSchema = Obj({
  consecutive5xx: Type.Integer({ minimum: 0, default: 5, description: 'Consecutive 5xx responses (or connect failures and resets) that eject an endpoint; 0: off. Default 5.' }),
  consecutiveGatewayErrors: Type.Optional(Type.Integer({ minimum: 0, description: 'Consecutive 502/503/504 (or connect failures and resets) that eject an endpoint. Default: not counted separately.' })),
  intervalMs: Type.Integer({ minimum: 1, default: 10_000, description: 'How often ejections are reviewed and expired endpoints brought back. Default 10 s (Envoy).' }),
  baseEjectionMs: Type.Integer({ minimum: 1, default: 30_000, description: 'The n-th ejection of an endpoint lasts n × this. Default 30 s.' }),
  maxEjectionPercent: Type.Integer({ minimum: 0, maximum: 100, default: 50, description: 'Never eject more than this share of a service\'s endpoints. Default 50.' }),
}, { default: {}, description: 'Passive health checking, with Envoy\'s semantics.' });

export const SubsetSchema = Obj({
  name: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$', description: 'Subset name, unique within the service (e.g. `v1`, `canary`).' }),
  labels: Labels('The subset is the service\'s endpoints whose workloads carry all of these labels.', { minProperties: 1 }),
});

export const ServiceSchema = Obj({
  name: Name('Service name, unique within its namespace.'),
  namespace: Namespace,
  vip: Type.Optional(Ip('Virtual IP clients connect to. Without one the service is reached by name only (outbound target, Host header).')),
  ports: Type.Array(ServicePortSchema, { minItems: 1, description: 'Ports of the service.' }),
  selector: Type.Optional(Labels('Workloads whose labels include all of these are endpoints (at the targetPort).')),
  endpoints: Type.Optional(Type.Array(EndpointSchema, { description: 'Upstreams outside the workload list, in addition to selected workloads.' })),
  loadBalancer: StringEnum(LOAD_BALANCERS, {
    default: 'least-request',
    description: '`least-request`: the less busy of two random endpoints (Envoy\'s and Istio\'s default); `round-robin`. Default least-request.',
  }),
  outlierDetection: OutlierDetectionSchema,
  connectTimeoutMs: Type.Integer({ minimum: 1, default: 5000, description: 'Upstream connect timeout. Default 5 s (Envoy).' }),
  requestTimeoutMs: Millis(15_000, 'Per request to this service: time until the whole response has arrived, across retries; 0: none. Default 15 s (Envoy\'s route timeout).'),
  perTryTimeoutMs: Millis(0, 'Per attempt: time until response headers, then between body chunks; 0: none (only requestTimeoutMs applies). Default 0, like Envoy\'s per_try_timeout.'),
  subsets: Type.Optional(Type.Array(SubsetSchema, {
    description: 'Named subsets of the service\'s endpoints (an Istio DestinationRule\'s subsets): a filter with the `traffic` capability (e.g. traffic-split) routes a request to one by name.',
  })),
});

const Sha256Pin = Type.String({
  pattern: '^([0-9a-fA-F]{64}|sha256-[A-Za-z0-9+/]{43}=)$',
  description: 'Pins the filter: its digest (a sha256 over the component, its declared capabilities and its config schema; see the SDK README), hex or `sha256-<base64>` (npm integrity form). Loading fails on any other content. Required for npm refs unless allowUnpinned.',
});

/** Host capabilities a binding may grant (the SDK's list). */
const CAPABILITY_NAMES = ['log', 'counters', 'clock', 'random', 'shared', 'traffic'] as const;

export const FilterRefSchema = Obj({
  ref: Type.String({
    minLength: 1,
    description: 'A filter package folder or .wasm file, relative to this config file (`./filters/x`, `../x`, `/abs/x`, `dir/x`), or an npm spec (`@vendor/filter-x@^1.2`, `filter-x`): installed in node_modules beside or above this file, or, with `filterSource.registry`, resolved from that registry into the filter cache.',
  }),
  name: Type.Optional(Type.String({ minLength: 1, description: 'Name in logs, metrics and error responses. Default: the filter\'s own name.' })),
  sha256: Type.Optional(Sha256Pin),
  allowUnpinned: Type.Boolean({ default: false, description: 'Load an npm ref without a sha256 pin (whatever version is installed, with whatever capabilities it declares). Default false: npm refs must be pinned.' }),
  capabilities: Type.Optional(Type.Array(StringEnum(CAPABILITY_NAMES), {
    uniqueItems: true,
    description: 'The host capabilities this binding grants the filter. A filter declaring any other is refused at load, naming them. Default: what the filter declares.',
  })),
  maxKeys: Type.Integer({ minimum: 1, maximum: 262_144, default: 4096, description: 'Keys the filter\'s shared table (capability `shared`) holds. A new key past them is refused (a rate limit answers it as limited); a live entry is never evicted to make room. Default 4096.' }),
  config: Type.Optional(Type.Unknown({ description: 'The filter\'s configuration, validated against its schema.' })),
  failurePolicy: StringEnum(FAILURE_POLICIES, { default: 'fail-closed', description: 'What a trap or missed deadline does: `fail-closed` answers 503 naming the filter, `fail-open` skips it. Default fail-closed.' }),
  exposeErrors: Type.Optional(Type.Boolean({ description: 'Put a failing filter\'s error text (its exception, mapped to its TypeScript source) in the 503 a fail-closed failure answers, as well as in the log. For development: exception texts can carry request data. Not served on the native data path yet (its 503 names the filter only): `dataPath: auto` picks the node path for a config that sets it. Default false.' })),
  deadlineMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 50, description: 'Longest a single filter call may run. Default 50 ms.' }),
  memoryMaxPages: Type.Integer({ minimum: 1, maximum: 65536, default: 1024, description: 'Linear memory cap in 64 KiB pages. Default 1024 (64 MiB).' }),
  instances: StringEnum(INSTANCE_STRATEGIES, {
    default: 'pooled',
    description: '`pooled`: warm instances are reused, and replaced after a trap. `per-request`: a fresh instance for every filter call, so nothing one request leaves in memory is seen by the next (cheap on wasmtime; a full instantiation per call on v8). Default pooled.',
  }),
});

export const BindingTargetSchema = Type.Union([
  Obj({ service: QualifiedName('`name.namespace` of a service.') }),
  Obj({ workload: QualifiedName('`name.namespace` of a workload.') }),
  Obj({ namespace: Type.String({ minLength: 1, description: 'Every service and workload in this namespace.' }) }),
  Obj({ all: Type.Literal(true, { description: 'Every destination, including ones the mesh does not know (passthrough).' }) }),
], { description: 'one of { service: name.namespace }, { workload: name.namespace }, { namespace: ns }, { all: true }' });

export const BindingSchema = Obj({
  name: Type.String({ minLength: 1, description: 'Unique binding name.' }),
  target: BindingTargetSchema,
  direction: StringEnum(DIRECTIONS, {
    description: '`outbound`: traffic leaving local workloads, matched on its destination service (or workload, when addressed by IP); `inbound`: traffic to local workloads, matched on the workload and the services selecting it.',
  }),
  priority: Type.Integer({ default: 0, description: 'Among matching bindings, higher priority runs first; equal priorities run in file order. Default 0.' }),
  filters: Type.Array(FilterRefSchema, { minItems: 1, description: 'Filters, in chain order.' }),
});

export const NodeSchema = Obj({
  name: Type.String({ minLength: 1, description: 'The node\'s name, as workloads\' `node` says it.' }),
  address: Ip('The node\'s address (for operators: HBONE is dialed at the destination workload\'s address, not the node\'s).'),
  hbonePort: Port({ default: 15008, description: 'Port its HBONE listener takes at its workloads\' addresses: other nodes dial `<workload ip>:<hbonePort>`. Default 15008.' }),
});

export const CaSchema = Obj({
  controller: Type.Optional(Type.Boolean({
    description: 'Certificates come from the Ambit controller: the node sends certificate signing requests over its gRPC channel and never holds the CA key. Set by the controller in the config it streams (`ambit run --controller`); not for YAML files.',
  })),
  dir: Type.Optional(Type.String({
    minLength: 1,
    description: 'A folder (relative to this file) holding the CA: ca-cert.pem, ca-key.pem, and optionally cert-chain.pem and root-cert.pem (Istio\'s plug-in CA layout). When ca-cert.pem is absent, a root CA (ECDSA P-256, 10 years) is generated there on first start, the key written 0600.',
  })),
  certFile: Type.Optional(Type.String({ minLength: 1, description: 'The signing CA\'s certificate (a root or an intermediate), PEM. With keyFile; instead of dir.' })),
  keyFile: Type.Optional(Type.String({ minLength: 1, description: 'Its private key, PEM.' })),
  chainFile: Type.Optional(Type.String({ minLength: 1, description: 'Certificates between the CA and the root, PEM.' })),
  rootFile: Type.Optional(Type.String({ minLength: 1, description: 'The trust anchor(s), PEM. Required when certFile is an intermediate.' })),
}, { description: 'Where the mesh CA comes from: `dir` (load, or generate on first start), or `certFile` + `keyFile` (+ `chainFile`, `rootFile`), or `controller: true` (the controller signs).' });

export const IdentitySchema = Obj({
  ca: CaSchema,
  certTtlMs: Type.Integer({
    minimum: 1000, default: 86_400_000,
    description: 'Lifetime of a workload certificate. Default 24 h (Istio\'s default). Certificates are rotated at half their lifetime (minus up to 10 % at random), without dropping connections.',
  }),
}, { description: 'mTLS between node proxies (served by the native data path only: `proxy.dataPath` auto or native). Set: this node holds certificates for its local workloads only (issued by the mesh CA or the controller, rotated), listens for HBONE (proxy.hbone), presenting the certificate of the workload dialed, and sends traffic for workloads on other nodes listed in `nodes` through HBONE with the source workload\'s certificate, to `<destination workload ip>:<its node\'s hbonePort>`, accepting only the destination workload\'s identity. Unset: no mTLS; traffic to other nodes goes in plaintext.' });
export const CAPTURE_MODES = ['auto', 'ebpf', 'nftables', 'none'] as const;

export const CaptureSchema = Obj({
  mode: StringEnum(CAPTURE_MODES, {
    default: 'auto',
    description: 'How connects of enrolled workloads (those with a `cgroup`) reach the outbound listener. `auto`: eBPF, else nftables, else none, saying why at each step down; `ebpf`/`nftables`: that one or none; `none`: no capture. Nothing is installed while no workload of this node has a cgroup. Default auto.',
  }),
  redirectAddress: Type.Optional(Ip('IPv4 address enrolled workloads\' connects are sent to: the outbound listener as the workloads reach it. Default: proxy.outbound.address when it is IPv4 and not 0.0.0.0, else 127.0.0.1.')),
  redirectAddress6: Type.Optional(Ip('IPv6 address for IPv6 connects (the outbound listener must accept IPv6 there). Default: proxy.outbound.address when it is IPv6 and not ::, else IPv6 connects are not captured.')),
  sockhash: Type.Boolean({ default: true, description: 'eBPF: short-circuit sockets between local workloads and the proxy (sockops + sk_msg), skipping TCP/IP for their bytes. Default true.' }),
  pinDir: Type.Optional(Type.String({ minLength: 1, description: 'eBPF: directory for pinned maps and links (created 0700), absolute or relative to the bpffs mount. Default `<bpffs>/ambit`. One per node proxy.' })),
  nftTable: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z][A-Za-z0-9_-]*$', default: 'ambit', description: 'nftables: name of the `inet` table holding the capture rules. Default ambit.' }),
  proxyCgroup: Type.Optional(Type.String({ minLength: 1, description: 'eBPF: the proxy\'s cgroup (v2), where SO_ORIGINAL_DST is answered; relative to the cgroup2 mount or absolute. Default: the cgroup the proxy runs in (with `AMBIT_POD_UID` set, as in the Helm chart: that pod\'s kubelet cgroup).' })),
}, { default: {}, description: 'Traffic capture: bringing enrolled workloads\' connects to the outbound listener.' });

export const MeshConfigSchema = Obj({
  $schema: Type.Optional(Type.String({ description: 'For editors.' })),
  trustDomain: Type.String({ minLength: 1, default: 'cluster.local', description: 'SPIFFE trust domain. Default cluster.local.' }),
  node: Type.String({ minLength: 1, description: 'This node\'s name: workloads with this node (or none) are local.' }),
  proxy: ProxySchema,
  identity: Type.Optional(IdentitySchema),
  nodes: Type.Array(NodeSchema, { default: [], description: 'Node proxies of the mesh and their HBONE ports. Traffic to a workload on a node listed here goes through HBONE (when `identity` is set).' }),
  capture: CaptureSchema,
  workloads: Type.Array(WorkloadSchema, { default: [], description: 'Workloads (pods) of the mesh.' }),
  services: Type.Array(ServiceSchema, { default: [], description: 'Services: VIPs and names mapped to endpoints.' }),
  bindings: Type.Array(BindingSchema, { default: [], description: 'Filter bindings: which filters run on which traffic.' }),
  filterSource: Type.Optional(FilterSourceSchema),
}, { title: 'Ambit mesh config', description: 'Config of an Ambit node proxy (ambit run --config mesh.yaml).' });

export type MeshConfig = Static<typeof MeshConfigSchema>;
export type ProxyConfig = Static<typeof ProxySchema>;
export type CaptureConfig = Static<typeof CaptureSchema>;
export type CaptureMode = (typeof CAPTURE_MODES)[number];
export type LimitsConfig = Static<typeof LimitsSchema>;
export type WorkloadConfig = Static<typeof WorkloadSchema>;
export type NodeConfig = Static<typeof NodeSchema>;
export type IdentityConfig = Static<typeof IdentitySchema>;
export type HboneListenerConfig = Static<typeof ProxySchema>['hbone'];
export type ServiceConfig = Static<typeof ServiceSchema>;
export type ServicePortConfig = Static<typeof ServicePortSchema>;
export type EndpointConfig = Static<typeof EndpointSchema>;
export type SubsetConfig = Static<typeof SubsetSchema>;
export type OutlierDetectionConfig = Static<typeof OutlierDetectionSchema>;
export type BindingConfig = Static<typeof BindingSchema>;
export type BindingTarget = Static<typeof BindingTargetSchema>;
export type FilterRefConfig = Static<typeof FilterRefSchema>;
export type Protocol = (typeof PROTOCOLS)[number];
export type LoadBalancerPolicy = (typeof LOAD_BALANCERS)[number];
export type EngineChoice = (typeof ENGINES)[number];
export type Direction = (typeof DIRECTIONS)[number];
