/**
 * Capture in Prometheus: `ambit_capture_mode{mode}` (1 for the active mode) and
 * `ambit_capture_program_events{event}` (the eBPF programs' counters, read from the kernel at
 * each scrape: connects redirected and left direct, SO_ORIGINAL_DST answers, sockhash writes…).
 */
import { Gauge, type Registry } from 'prom-client';
import type { Capture } from './index.js';
import { STAT_NAMES } from './layout.js';

export function registerCaptureMetrics(registry: Registry, capture: Capture): void {
  // A registry shared by two nodes in one process keeps the first node's capture metrics.
  if (registry.getSingleMetric('ambit_capture_mode')) return;
  new Gauge({
    name: 'ambit_capture_mode',
    help: 'Traffic capture mode in use (1 for the active one): ebpf, nftables or none.',
    labelNames: ['mode'],
    registers: [registry],
    collect() {
      for (const mode of ['ebpf', 'nftables', 'none'] as const) this.set({ mode }, capture.mode === mode ? 1 : 0);
    },
  });
  if (capture.mode !== 'ebpf') return;
  new Gauge({
    name: 'ambit_capture_program_events',
    help: 'Counters of the eBPF capture programs since they were first loaded on this node (they survive proxy restarts).',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      let stats;
      try { stats = capture.stats(); } catch { return; }
      if (!stats) return;
      for (const name of STAT_NAMES) this.set({ event: name }, stats[name]);
    },
  });
}
