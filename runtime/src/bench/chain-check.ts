/** Checks (once, untimed) that a measured chain did what the bench expects of it. */
import type { PhaseOutcome } from './deps.js';
import { memberHeader } from './inputs.js';

export function checkOutcome(outcome: PhaseOutcome, length: number, what: string): void {
  const want = Array.from({ length }, (_, i) => memberHeader(i));
  const got = outcome.action === 'continue'
    ? outcome.ops.map((op) => (op.tag === 'set' ? op.val[0] : `${op.tag}:${JSON.stringify(op.val)}`))
    : [];
  if (outcome.action !== 'continue' || got.join() !== want.join()) {
    const detail = outcome.failures.map((f) => `${f.filter}: ${f.kind}: ${f.message}`).join('; ');
    throw new Error(`${what}: expected the chain to set ${want.join(', ')}; got ${outcome.action} ${JSON.stringify(got)} ${detail}`);
  }
}
