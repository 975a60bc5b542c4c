import { AmbitError } from '../deps.js';
import type { ChainInfo, FilterChain, PhaseInput, PhaseOutcome } from './engine.js';
import type { PhaseName } from '../deps.js';

/**
 * What every engine's chain does the same way: refuse work once closed, skip phases no
 * member implements without crossing into the engine, and let in-flight phases finish
 * before the chain's instances are released.
 */
export abstract class ChainBase implements FilterChain {
  private closed = false;
  private inflight = 0;
  private drained: (() => void) | undefined;
  private readonly phases: ReadonlySet<PhaseName>;

  constructor(readonly filters: ChainInfo['filters']) {
    this.phases = new Set(filters.flatMap((f) => f.phases));
  }

  /** Runs a phase some member implements. */
  protected abstract dispatch(input: PhaseInput): Promise<PhaseOutcome>;

  /** Releases the chain's resources; called once, after the last in-flight phase. */
  protected abstract release(): void;

  run(input: PhaseInput): Promise<PhaseOutcome> {
    if (this.closed) throw new AmbitError('AMBIT_ERR_ENGINE_CLOSED', 'this filter chain was closed; run the phase on the current chain');
    // No filter takes part in this phase: no crossing at all.
    if (!this.phases.has(input.phase)) return Promise.resolve({ action: 'continue', ops: [], calls: [], failures: [] });
    this.inflight++;
    return this.dispatch(input).finally(() => {
      if (--this.inflight === 0 && this.drained) this.drained();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inflight > 0) await new Promise<void>((r) => { this.drained = r; });
    this.release();
  }
}
