/**
 * Prometheus metrics of mTLS between nodes, read from the HBONE side and the certificate
 * store when scraped:
 *
 * - `ambit_hbone_connections{side}`: open HBONE connections (`inbound`: accepted on this
 *   node's listener; `outbound`: sessions to other nodes);
 * - `ambit_hbone_connections_opened_total{side}`, `ambit_hbone_tunnels_opened_total{side}`;
 * - `ambit_hbone_refused_total{what}`: refused connections (TLS, certificate, SPIFFE ID)
 *   and refused tunnels (destination, source identity);
 * - `ambit_certificate_expiry_timestamp_seconds{identity}`: when each certificate the node
 *   holds expires (alert on it coming close: rotation has been failing);
 * - `ambit_certificate_rotations_total{result}`.
 *
 * With several workers the primary combines them: counts summed, expiry the earliest.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CertificateStore } from '../identity/store.js';
import type { HboneStats } from '../native-path/hbone-stats.js';

export interface MeshMetricsSource {
  stats(): HboneStats;
}

/** Registers the metrics on `registry`; they read `tunnels` and `store` at each scrape. */
export function registerMeshMetrics(registry: Registry, tunnels: MeshMetricsSource, store: CertificateStore): void {
  const counted = new WeakMap<Counter<string>, Map<string, number>>();
  /** Counters from totals kept elsewhere: adds what grew since the last scrape. */
  const advance = (c: Counter<string>, labels: Record<string, string>, total: number) => {
    let seen = counted.get(c);
    if (!seen) counted.set(c, (seen = new Map()));
    const key = JSON.stringify(labels);
    const delta = total - (seen.get(key) ?? 0);
    if (delta > 0) c.inc(labels, delta);
    seen.set(key, total);
  };
  new Gauge({
    name: 'ambit_hbone_connections', help: 'Open HBONE (mTLS) connections: inbound on this node\'s listener, outbound sessions to other nodes.',
    labelNames: ['side'], registers: [registry], aggregator: 'sum',
    collect() {
      const s = tunnels.stats();
      this.set({ side: 'inbound' }, s.server.connections);
      this.set({ side: 'outbound' }, s.client.sessions);
    },
  });
  type Stats = ReturnType<MeshMetricsSource['stats']>;
  /** Counters whose totals the HBONE side keeps: name, help, label, and the totals by label value. */
  const totals: Array<[string, string, string, (s: Stats) => Array<[string, number]>]> = [
    ['ambit_hbone_connections_opened_total', 'HBONE connections accepted (inbound) and sessions made (outbound).', 'side',
      (s) => [['inbound', s.server.connectionsTotal], ['outbound', s.client.sessionsTotal]]],
    ['ambit_hbone_tunnels_opened_total', 'HBONE tunnels (CONNECT streams) served (inbound) and opened (outbound).', 'side',
      (s) => [['inbound', s.server.tunnelsTotal - s.server.tunnelsRefused], ['outbound', s.client.tunnelsTotal]]],
    ['ambit_hbone_refused_total', 'HBONE connections refused (TLS version, certificate, SPIFFE ID) and tunnels refused (destination, source identity).', 'what',
      (s) => [['connection', s.server.connectionsRefused], ['tunnel', s.server.tunnelsRefused]]],
  ];
  for (const [name, help, label, read] of totals) {
    const counter: Counter<string> = new Counter({
      name, help, labelNames: [label], registers: [registry], aggregator: 'sum',
      collect() {
        for (const [value, total] of read(tunnels.stats())) advance(counter, { [label]: value }, total);
      },
    });
  }
  new Gauge({
    name: 'ambit_certificate_expiry_timestamp_seconds', help: 'When each certificate this node holds expires (Unix seconds).',
    labelNames: ['identity'], registers: [registry], aggregator: 'min',
    collect() {
      this.reset();
      for (const id of store.identities()) {
        const c = store.certificate(id);
        if (c) this.set({ identity: id }, Math.floor(c.notAfter.getTime() / 1000));
      }
    },
  });
  const rotations = new Counter({
    name: 'ambit_certificate_rotations_total', help: 'Certificate rotations, by result.',
    labelNames: ['result'], registers: [registry], aggregator: 'sum',
  });
  rotations.inc({ result: 'ok' }, 0);
  rotations.inc({ result: 'failed' }, 0);
  store.on('rotated', () => rotations.inc({ result: 'ok' }));
  store.on('rotationFailed', () => rotations.inc({ result: 'failed' }));
}
