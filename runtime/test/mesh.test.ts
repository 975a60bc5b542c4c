/** MeshIndex: destinations, names, endpoints, and which filter bindings apply in which order. */
import { describe, expect, it } from 'vitest';
import { parseMeshConfig } from '../src/config/index.js';
import { canonicalIp, MeshIndex, parseHostPort, serviceKeyOfHost, type MeshEndpoint } from '../src/mesh/index.js';

const MESH = `
node: n1
trustDomain: mesh.test
workloads:
  - { name: catalog-1, namespace: shop, address: 10.1.0.5, labels: { app: catalog, version: v1 }, serviceAccount: catalog }
  - { name: catalog-2, namespace: shop, address: 10.1.0.6, labels: { app: catalog, version: v2 }, node: n2 }
  - { name: catalog-x, namespace: other, address: 10.1.0.7, labels: { app: catalog } }
  - { name: reviews-1, namespace: shop, address: "2001:DB8::0:1", labels: { app: reviews }, ports: [9080] }
  - { name: admin-1, namespace: shop, address: 10.1.0.9, labels: { app: reviews }, ports: [22] }
services:
  - name: catalog
    namespace: shop
    vip: 10.96.0.10
    ports:
      - { port: 80, targetPort: 8080, name: http }
      - { port: 9090, name: metrics }
    selector: { app: catalog }
    endpoints: [{ address: 192.168.1.20 }, { address: 10.1.0.5 }]
  - name: reviews
    namespace: shop
    vip: "fd00::10"
    ports: [{ port: 9080 }]
    selector: { app: reviews }
  - name: legacy
    namespace: shop
    ports: [{ port: 443, targetPort: 8443 }]
    endpoints: [{ address: 203.0.113.7, port: 9443 }]
  - name: catalog-v1
    namespace: shop
    vip: 10.96.0.11
    ports: [{ port: 80, targetPort: 8080 }]
    selector: { app: catalog, version: v1 }
bindings:
  - name: mesh-wide
    target: { all: true }
    direction: outbound
    filters: [{ ref: ./authn }]
  - name: catalog-retry
    target: { service: catalog.shop }
    direction: outbound
    filters: [{ ref: ./retry }, { ref: ./headers }]
  - name: shop-ns
    target: { namespace: shop }
    direction: outbound
    filters: [{ ref: ./ns }]
  - name: first
    target: { service: catalog.shop }
    direction: outbound
    priority: 10
    filters: [{ ref: ./first }]
  - name: catalog-authz
    target: { service: catalog.shop }
    direction: inbound
    filters: [{ ref: ./authz }]
  - name: catalog-1-only
    target: { workload: catalog-1.shop }
    direction: inbound
    filters: [{ ref: ./w1 }]
  - name: v1-only
    target: { service: catalog-v1.shop }
    direction: inbound
    filters: [{ ref: ./v1 }]
  - name: other-ns
    target: { namespace: other }
    direction: inbound
    filters: [{ ref: ./other }]
`;

function index<E extends MeshEndpoint = MeshEndpoint>(createEndpoint?: (e: MeshEndpoint) => E): MeshIndex<E> {
  const { config } = parseMeshConfig(MESH, 'mesh.yaml');
  return new MeshIndex<E>(config, createEndpoint ? { createEndpoint } : {});
}

const names = (plan: { filters: ReadonlyArray<{ filter: { ref: string } }> }) => plan.filters.map((f) => f.filter.ref.slice(2));

describe('MeshIndex: destinations', () => {
  const mesh = index();

  it('a VIP and port is the service, with endpoints from its selector (at the targetPort) and explicit ones', () => {
    const d = mesh.destination('10.96.0.10', 80);
    expect(d?.kind).toBe('service');
    if (d?.kind !== 'service') return;
    expect(d.key).toBe('catalog.shop');
    expect(d.servicePort).toEqual({ port: 80, targetPort: 8080, name: 'http', protocol: 'auto' });
    // Same namespace only; explicit endpoints after selected ones; 10.1.0.5 once.
    expect(d.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.1.0.5:8080', '10.1.0.6:8080', '192.168.1.20:8080']);
    expect(d.endpoints[0]!.workload).toEqual({ name: 'catalog-1', namespace: 'shop', serviceAccount: 'catalog' });
    expect(d.endpoints[2]!.workload).toBeUndefined();
    // The second port: targetPort defaults to the port.
    const m = mesh.destination('10.96.0.10', 9090);
    expect(m?.kind === 'service' && m.endpoints.map((e) => e.port)).toEqual([9090, 9090, 9090]);
  });

  it('a workload that lists its ports only serves those', () => {
    const d = mesh.destination('fd00::10', 9080);
    expect(d?.kind === 'service' && d.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['2001:db8::1:9080']);
  });

  it('an explicit endpoint port is used as is', () => {
    const d = mesh.serviceByName('legacy.shop', 443);
    expect(d?.endpoints).toEqual([{ address: '203.0.113.7', port: 9443 }]);
  });

  it('a workload address is the workload, at any port', () => {
    const d = mesh.destination('10.1.0.6', 8080);
    expect(d).toMatchObject({ kind: 'workload', key: 'catalog-2.shop', port: 8080 });
    if (d?.kind !== 'workload') return;
    expect(d.workload.identity).toBe('spiffe://mesh.test/ns/shop/sa/default');
    expect(d.workload.local).toBe(false);
    expect(d.workload.services).toEqual(['catalog.shop']);
    expect(mesh.workloadByAddress('10.1.0.5')?.services).toEqual(['catalog.shop', 'catalog-v1.shop']);
    expect(mesh.workloadByAddress('10.1.0.5')?.local).toBe(true);
  });

  it('unknown addresses and ports are undefined (passthrough)', () => {
    expect(mesh.destination('10.9.9.9', 80)).toBeUndefined();
    expect(mesh.destination('10.96.0.10', 81)).toBeUndefined();
    expect(mesh.workloadByAddress('10.96.0.10')).toBeUndefined();
    expect(mesh.serviceByName('catalog.shop', 81)).toBeUndefined();
    expect(mesh.serviceByName('nope.shop', 80)).toBeUndefined();
    expect(mesh.serviceByName('catalog', 80)).toBeUndefined();
  });

  it('takes socket forms of addresses: IPv4-mapped IPv6, compressed IPv6', () => {
    expect(mesh.destination('::ffff:10.96.0.10', 80)?.kind).toBe('service');
    expect(mesh.destination('2001:db8::1', 9080)).toMatchObject({ kind: 'workload', key: 'reviews-1.shop' });
    expect(mesh.workloadByAddress('::ffff:10.1.0.5')?.key).toBe('catalog-1.shop');
  });

  it('finds services by name in the usual forms', () => {
    const d = mesh.destination('10.96.0.10', 80);
    for (const host of ['catalog.shop', 'catalog.shop.svc', 'catalog.shop.svc.cluster.local', 'catalog.shop.svc.mesh.test', 'Catalog.Shop.svc.cluster.local.', 'catalog.shop.svc.other.domain']) {
      expect(mesh.serviceByName(host, 80), host).toBe(d);
    }
    expect(mesh.serviceByName('catalog.shop.example.com', 80)).toBeUndefined();
  });

  it('answers with the same objects every time (nothing allocated per lookup)', () => {
    expect(mesh.destination('10.96.0.10', 80)).toBe(mesh.destination('10.96.0.10', 80));
    expect(mesh.destination('10.1.0.6', 8080)).toBe(mesh.destination('10.1.0.6', 8080));
    expect(mesh.bindingsFor('outbound', { service: 'catalog.shop' })).toBe(mesh.bindingsFor('outbound', { service: 'catalog.shop' }));
    expect(mesh.bindingsFor('inbound', { service: 'catalog.shop', workload: 'catalog-1.shop' }))
      .toBe(mesh.bindingsFor('inbound', { service: 'catalog.shop', workload: 'catalog-1.shop' }));
  });

  it('makes endpoint objects with createEndpoint, one per address:port, shared between services', () => {
    let made = 0;
    const mesh2 = index((e) => ({ ...e, active: 0, id: ++made }));
    const a = mesh2.destination('10.96.0.10', 80);
    const b = mesh2.destination('10.96.0.11', 80);
    if (a?.kind !== 'service' || b?.kind !== 'service') throw new Error('not services');
    expect(b.endpoints).toHaveLength(1);
    expect(b.endpoints[0]).toBe(a.endpoints[0]);
    expect(b.endpoints[0]!.active).toBe(0);
    // 3 (catalog:8080) + 3 (catalog:9090) + 1 (reviews) + 1 (legacy); catalog-v1 reuses catalog-1:8080.
    expect(made).toBe(8);
  });

  it('resolves the outbound fallback target', () => {
    const svc = parseMeshConfig(`${MESH}\nproxy:\n  outbound:\n    target: catalog.shop:80\n`, 'mesh.yaml');
    expect(new MeshIndex(svc.config).outboundTarget).toMatchObject({ kind: 'service', key: 'catalog.shop' });
    const ip = parseMeshConfig(`${MESH}\nproxy:\n  outbound:\n    target: "127.0.0.1:18081"\n`, 'mesh.yaml');
    expect(new MeshIndex(ip.config).outboundTarget).toEqual({ kind: 'address', address: '127.0.0.1', port: 18081 });
    const vip = parseMeshConfig(`${MESH}\nproxy:\n  outbound:\n    target: "10.96.0.11:80"\n`, 'mesh.yaml');
    expect(new MeshIndex(vip.config).outboundTarget).toMatchObject({ kind: 'service', key: 'catalog-v1.shop' });
    expect(index().outboundTarget).toBeUndefined();
  });
});

describe('MeshIndex: a named targetPort', () => {
  const YAML = `node: n1
workloads:
  - { name: a, namespace: shop, address: 10.1.0.1, labels: { app: api }, namedPorts: { http: 8080 } }
  - { name: b, namespace: shop, address: 10.1.0.2, labels: { app: api }, namedPorts: { metrics: 9090, http: 9000 } }
  - { name: c, namespace: shop, address: 10.1.0.3, labels: { app: api }, namedPorts: { admin: 8080 } }
  - { name: d, namespace: shop, address: 10.1.0.4, labels: { app: api }, namedPorts: { http: 7000 }, ports: [8080] }
services:
  - name: api
    namespace: shop
    vip: 10.96.1.1
    selector: { app: api }
    ports: [{ port: 80, targetPort: http }]
`;

  it('is resolved per workload; one without a port of that name (or not serving it) is no endpoint', () => {
    const { config } = parseMeshConfig(YAML, 'mesh.yaml');
    const dest = new MeshIndex(config).destination('10.96.1.1', 80);
    expect(dest?.kind === 'service' && dest.endpoints.map((e) => `${e.address}:${e.port}`)).toEqual(['10.1.0.1:8080', '10.1.0.2:9000']);
    expect(dest?.kind === 'service' && dest.servicePort.targetPort).toBe('http');
  });

  it('an explicit endpoint outside the workloads needs its own port', () => {
    let message = '';
    try {
      parseMeshConfig(YAML.replace('ports: [{ port: 80, targetPort: http }]', 'ports: [{ port: 80, targetPort: http }]\n    endpoints: [{ address: 10.2.0.1 }]'), 'mesh.yaml');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/\/services\/0\/endpoints\/0\/port: port 80's targetPort is the name http, which only workloads resolve \(namedPorts\); give this endpoint its port/);
  });

  it('names follow Kubernetes\' rules', () => {
    expect(() => parseMeshConfig(YAML.replace('targetPort: http', 'targetPort: Http_1'), 'mesh.yaml')).toThrow(/targetPort/);
  });
});

describe('MeshIndex: bindings', () => {
  const mesh = index();

  it('outbound to a service: all matching bindings, priority first, then file order', () => {
    const plan = mesh.bindingsFor('outbound', { service: 'catalog.shop' });
    expect(names(plan)).toEqual(['first', 'authn', 'retry', 'headers', 'ns']);
    expect(plan.filters.map((f) => f.binding)).toEqual(['first', 'mesh-wide', 'catalog-retry', 'catalog-retry', 'shop-ns']);
    expect(plan.key).toBe('/bindings/3/filters/0,/bindings/0/filters/0,/bindings/1/filters/0,/bindings/1/filters/1,/bindings/2/filters/0');
    // Another service of the namespace: mesh-wide and namespace bindings only.
    expect(names(mesh.bindingsFor('outbound', { service: 'reviews.shop' }))).toEqual(['authn', 'ns']);
  });

  it('unknown or no destination: mesh-wide bindings only', () => {
    expect(names(mesh.bindingsFor('outbound'))).toEqual(['authn']);
    expect(names(mesh.bindingsFor('outbound', { service: 'nope.shop' }))).toEqual(['authn']);
    expect(mesh.bindingsFor('inbound')).toEqual({ key: '', filters: [] });
  });

  it('inbound to a workload: its own bindings and those of every service selecting it', () => {
    expect(names(mesh.bindingsFor('inbound', { workload: 'catalog-1.shop' }))).toEqual(['authz', 'w1', 'v1']);
    expect(names(mesh.bindingsFor('inbound', { workload: 'catalog-2.shop' }))).toEqual(['authz']);
    expect(names(mesh.bindingsFor('inbound', { workload: 'catalog-x.other' }))).toEqual(['other']);
  });

  it('inbound with the service known: that service and the workload, not the workload\'s other services', () => {
    expect(names(mesh.bindingsFor('inbound', { service: 'catalog.shop', workload: 'catalog-1.shop' }))).toEqual(['authz', 'w1']);
    expect(names(mesh.bindingsFor('inbound', { service: 'catalog-v1.shop', workload: 'catalog-1.shop' }))).toEqual(['w1', 'v1']);
  });

  it('directions do not mix', () => {
    expect(names(mesh.bindingsFor('inbound', { service: 'catalog.shop' }))).toEqual(['authz']);
    expect(names(mesh.bindingsFor('outbound', { workload: 'catalog-x.other' }))).toEqual(['authn']);
  });

  it('outbound to a pod IP counts as the pod\'s services too', () => {
    expect(names(mesh.bindingsFor('outbound', { workload: 'catalog-1.shop' }))).toEqual(['first', 'authn', 'retry', 'headers', 'ns']);
  });

  it('equal filter lists share one plan object', () => {
    const a = mesh.bindingsFor('outbound', { service: 'reviews.shop' });
    const b = mesh.bindingsFor('outbound', { service: 'legacy.shop' });
    expect(a).toBe(b);
  });
});

describe('address helpers', () => {
  it('canonical IPs', () => {
    expect(canonicalIp('10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalIp('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalIp('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(canonicalIp('0:0:0:0:0:ffff:a00:1')).toBe('10.0.0.1');
    expect(canonicalIp('10.0.0.256')).toBeUndefined();
    expect(canonicalIp('catalog')).toBeUndefined();
  });

  it('host:port targets', () => {
    expect(parseHostPort('10.0.0.1:80')).toEqual({ kind: 'ip', address: '10.0.0.1', port: 80 });
    expect(parseHostPort('[2001:db8::1]:443')).toEqual({ kind: 'ip', address: '2001:db8::1', port: 443 });
    expect(parseHostPort('catalog.shop:80')).toEqual({ kind: 'name', host: 'catalog.shop', port: 80 });
    expect(parseHostPort('2001:db8::1:443')).toBeUndefined();
    expect(parseHostPort('catalog.shop:0')).toBeUndefined();
    expect(parseHostPort('catalog.shop')).toBeUndefined();
    expect(serviceKeyOfHost('a.b.svc.cluster.local')).toBe('a.b');
    expect(serviceKeyOfHost('a.b.svcx')).toBeUndefined();
  });
});
