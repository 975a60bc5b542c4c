/**
 * Traffic capture: how enrolled pods' connects reach the outbound listener, and (with
 * `identity`) how other nodes' HBONE to this node's workloads reaches the HBONE listener
 * (./hbone-inbound.ts).
 *
 *   probe at start: eBPF → nftables → none, one actionable log line for each step down;
 *   update on every config reload (pods enrolled and detached, meshed destinations);
 *   close on shutdown leaves capture installed (pinned links, nft table) for the next start;
 *   `ambit capture uninstall` removes all of it.
 */
import type { CaptureMode, MeshConfig } from '../config/schema.js';
import { AmbitError, errorMessage } from '../deps.js';
import { EbpfCapture, uninstallEbpf, type CaptureStats, type EbpfStatus } from './ebpf.js';
import { NftCapture, uninstallNft } from './nftables.js';
import { applyHboneInbound, hboneInboundPlan, type HboneInboundPlan } from './hbone-inbound.js';
import { capturePlan, type CapturePlan } from './plan.js';

export { capturePlan, type CapturePlan } from './plan.js';
export { nftRuleset } from './nftables.js';
export { hboneInboundPlan, hboneInboundRuleset, type HboneInboundPlan } from './hbone-inbound.js';
export type { CaptureStats } from './ebpf.js';

export type ActiveMode = 'ebpf' | 'nftables' | 'none';
export type CaptureLog = (level: 'info' | 'warn', message: string) => void;

export interface CaptureStatus {
  mode: ActiveMode;
  requested: CaptureMode;
  /** Why each better mode was not used (one line each). */
  stepsDown: string[];
  redirect: CapturePlan['redirect'];
  pods: string[];
  ebpf?: EbpfStatus & { stats: CaptureStats };
  nftTable?: string;
  /** Inbound HBONE (`<workload ip>:<hbonePort>` to the HBONE listener), when installed. */
  hboneInbound?: { table: string; port: number; listener: { address: string; port: number }; workloads: number };
}

export interface Capture {
  readonly mode: ActiveMode;
  update(config: MeshConfig): Promise<void>;
  status(): CaptureStatus;
  /** eBPF counters, when eBPF is the mode. */
  stats(): CaptureStats | undefined;
  close(): Promise<void>;
}

/** Installs capture for `config`, stepping down eBPF → nftables → none as needed. Never throws. */
export async function startCapture(config: MeshConfig, log: CaptureLog): Promise<Capture> {
  let plan = capturePlan(config);
  const requested = plan.settings.mode;
  const stepsDown: string[] = [];
  let ebpf: EbpfCapture | undefined;
  let nft: NftCapture | undefined;

  const none = (why: string) => { stepsDown.push(why); };
  if (requested === 'none') {
    none('capture.mode is none');
  } else if (plan.pods.length === 0) {
    none('no workload of this node has a cgroup to enroll (workloads[].cgroup)');
  } else {
    if (requested === 'auto' || requested === 'ebpf') {
      try {
        ebpf = EbpfCapture.install(plan, log);
      } catch (e) {
        const line = errorMessage(e);
        stepsDown.push(line);
        log('warn', `capture: ${line}${requested === 'auto' ? '; trying nftables' : '; capture is off (capture.mode: ebpf)'}`);
      }
    }
    if (!ebpf && (requested === 'auto' || requested === 'nftables')) {
      try {
        nft = await NftCapture.install(plan);
      } catch (e) {
        const line = errorMessage(e);
        stepsDown.push(line);
        log('warn', `capture: ${line}; capture is off: connects go straight to their destinations`);
      }
    }
  }
  const mode: ActiveMode = ebpf ? 'ebpf' : nft ? 'nftables' : 'none';
  // Inbound HBONE: beside either outbound mechanism, wherever capture is on for this node.
  let hbone: HboneInboundPlan | undefined;
  const applyHbone = async (next: MeshConfig, enrolled: number): Promise<void> => {
    const p = requested !== 'none' && enrolled > 0 ? hboneInboundPlan(next) : undefined;
    if (!p) {
      if (hbone) await uninstallNft(hbone.table);
      hbone = undefined;
      return;
    }
    await applyHboneInbound(p);
    if (hbone && hbone.table !== p.table) await uninstallNft(hbone.table);
    hbone = p;
  };
  try {
    await applyHbone(config, plan.pods.length);
    if (hbone) log('info', `capture: inbound HBONE to ${hbone.workloads4.length + hbone.workloads6.length} workload address(es) at :${hbone.port} goes to the HBONE listener ${hbone.listener.address}:${hbone.listener.port} (nft table inet ${hbone.table})`);
  } catch (e) {
    const line = errorMessage(e);
    stepsDown.push(line);
    log('warn', `capture: ${line}; other nodes' HBONE reaches this node only where its listener takes the workloads' addresses itself`);
  }
  if (mode !== 'none') {
    log('info', `capture: ${mode}, ${plan.pods.length} workload(s) enrolled, connects to ${plan.destinations.length} meshed destination(s) go to ${plan.redirect.ip4}:${plan.redirect.port}${plan.redirect.ip6 ? ` and [${plan.redirect.ip6}]:${plan.redirect.port}` : ''}`);
  } else if (requested !== 'none' && plan.pods.length > 0) {
    log('warn', 'capture: none');
  }

  return {
    mode,
    async update(next: MeshConfig) {
      const nextPlan = capturePlan(next);
      try {
        if (ebpf) ebpf.apply(nextPlan);
        else if (nft) await nft.apply(nextPlan);
        plan = nextPlan;
        await applyHbone(next, nextPlan.pods.length);
      } catch (e) {
        log('warn', `capture: update failed, the previous capture state stays: ${errorMessage(e)}`);
      }
    },
    status() {
      const s: CaptureStatus = { mode, requested, stepsDown, redirect: plan.redirect, pods: plan.pods.map((p) => p.key) };
      if (ebpf) {
        try {
          s.ebpf = { ...ebpf.status(), stats: ebpf.stats() };
        } catch (e) {
          s.stepsDown = [...stepsDown, `reading eBPF state: ${errorMessage(e)}`];
        }
      }
      if (nft) s.nftTable = nft.table;
      if (hbone) s.hboneInbound = { table: hbone.table, port: hbone.port, listener: hbone.listener, workloads: hbone.workloads4.length + hbone.workloads6.length };
      return s;
    },
    stats: () => ebpf?.stats(),
    async close() {
      ebpf?.close();
      nft?.close();
    },
  };
}

/** `ambit capture uninstall`: removes pinned eBPF links and maps and the nft tables (outbound capture, inbound HBONE). */
export async function uninstallCapture(config: Pick<MeshConfig, 'capture'>): Promise<{ ebpf: string[]; nftTable: boolean }> {
  let ebpfRemoved: string[] = [];
  try {
    ebpfRemoved = uninstallEbpf(config.capture.pinDir);
  } catch (e) {
    if (!(e instanceof AmbitError) || !/unavailable|cannot uninstall/.test(e.message)) throw e;
  }
  const nftTable = await uninstallNft(config.capture.nftTable);
  const hboneTable = await uninstallNft(`${config.capture.nftTable}_hbone`);
  return { ebpf: ebpfRemoved, nftTable: nftTable || hboneTable };
}
