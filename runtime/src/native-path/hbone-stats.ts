/**
 * The counters of the native data path's HBONE side (`NativeProxy.hboneStats()`), read at each
 * scrape into the `ambit_hbone_*` metrics and shown in `/config_dump`.
 */

/** The HBONE listener: TLS connections from other nodes, and the CONNECT tunnels on them. */
export interface HboneServerStats {
  /** TLS connections that passed the checks and are open now. */
  connections: number;
  connectionsTotal: number;
  /** Handshakes refused: TLS version or suites, certificate, chain. */
  connectionsRefused: number;
  tunnels: number;
  tunnelsTotal: number;
  /** CONNECTs answered with an error (400, 401, 405, 503). */
  tunnelsRefused: number;
  /** Bytes tunnelled, counted at the tunnel streams. */
  bytesFromPeers: number;
  bytesToPeers: number;
}

/** Sessions this node opened to other nodes' HBONE listeners, and the tunnels on them. */
export interface HboneClientStats {
  sessions: number;
  sessionsTotal: number;
  tunnels: number;
  tunnelsTotal: number;
}

export interface HboneStats {
  server: HboneServerStats;
  client: HboneClientStats;
}
