/**
 * Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection
 * does it: every `retryPeriodMs` each replica reads the Lease; the holder renews it, the
 * others take it only once it is free (no holder: released) or its holder has not renewed
 * it for `leaseDurationMs` *as this replica observed it* (its own clock measures from when
 * it last saw the record change, so clock skew between replicas does not matter). Every
 * write is a replace guarded by the Lease's resourceVersion, so two replicas can never both
 * think they took it. A leader that cannot renew within `renewDeadlineMs` (shorter than the
 * lease) steps down before anyone else may take over; one that sees another holder steps
 * down at once. `stop()` releases the Lease (empty holder) so that another replica takes
 * over on its next try rather than after the lease runs out.
 */
import { V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { errorMessage, statusCode } from '../errors.js';

export interface LeaderElectionOptions {
  coordination: CoordinationV1Api;
  namespace: string;
  /** The Lease's name. */
  name: string;
  /** This replica (its pod name, plus something unique per process). */
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  onStartedLeading(): void;
  onStoppedLeading(): void;
  log(level: 'info' | 'warn', message: string): void;
}

/** client-go's defaults: 15 s lease, 10 s renew deadline, 2 s between tries. */
export const LEADER_DEFAULTS = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 } as const;

type Outcome = 'held' | 'other' | 'failed';

export class LeaderElector {
  #leader = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #lastRenew = 0;
  /** The holder and renew time last seen, and when this replica saw them first. */
  #observed: { record: string; at: number } | undefined;
  #running: Promise<void> = Promise.resolve();

  constructor(private readonly o: LeaderElectionOptions) {
    if (!(o.renewDeadlineMs < o.leaseDurationMs)) throw new RangeError('the renew deadline must be shorter than the lease duration');
    if (!(o.retryPeriodMs < o.renewDeadlineMs)) throw new RangeError('the retry period must be shorter than the renew deadline');
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  start(): void {
    this.#schedule(0);
  }

  /** Stops trying; a leader steps down and releases the Lease. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
    if (!this.#leader) return;
    this.#step(false);
    try {
      const lease = await this.o.coordination.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
      if (lease.spec?.holderIdentity !== this.o.identity) return;
      await this.o.coordination.replaceNamespacedLease({
        name: this.o.name, namespace: this.o.namespace,
        body: {
          ...lease,
          spec: {
            ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1,
            ...(lease.spec.acquireTime ? { acquireTime: new V1MicroTime(lease.spec.acquireTime) } : {}),
            ...(lease.spec.renewTime ? { renewTime: new V1MicroTime(lease.spec.renewTime) } : {}),
          },
        },
      });
      this.o.log('info', `leader election: released Lease ${this.o.namespace}/${this.o.name}`);
    } catch (e) {
      this.o.log('warn', `leader election: could not release Lease ${this.o.namespace}/${this.o.name} (another replica takes over when it runs out): ${errorMessage(e)}`);
    }
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#round().finally(() => this.#schedule(this.o.retryPeriodMs));
    }, ms);
  }

  async #round(): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await this.#tryAcquireOrRenew();
    } catch (e) {
      this.o.log('warn', `leader election: Lease ${this.o.namespace}/${this.o.name}: ${errorMessage(e)}`);
      outcome = 'failed';
    }
    if (this.#stopped) return;
    const now = Date.now();
    if (outcome === 'held') {
      this.#lastRenew = now;
      this.#step(true);
    } else if (outcome === 'other' || now - this.#lastRenew > this.o.renewDeadlineMs) {
      this.#step(false);
    }
  }

  #step(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.o.log('info', `leader election: ${this.o.identity} ${leader ? 'is now the leader' : 'is no longer the leader'} (Lease ${this.o.namespace}/${this.o.name})`);
    if (leader) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  async #tryAcquireOrRenew(): Promise<Outcome> {
    const { coordination, namespace, name, identity } = this.o;
    // MicroTime: the API server wants six digits of fraction.
    const now = new V1MicroTime();
    const spec = (acquired: Date, transitions: number) => ({
      holderIdentity: identity, leaseDurationSeconds: Math.ceil(this.o.leaseDurationMs / 1000), acquireTime: acquired, renewTime: now, leaseTransitions: transitions,
    });
    let lease: V1Lease;
    try {
      lease = await coordination.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (statusCode(e) !== 404) throw e;
      try {
        await coordination.createNamespacedLease({ namespace, body: { metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'ambit' } }, spec: spec(now, 0) } });
        return 'held';
      } catch (c) {
        if (statusCode(c) === 409) return 'other';
        throw c;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const record = `${holder}\0${String(lease.spec?.renewTime ?? '')}\0${lease.spec?.leaseDurationSeconds ?? ''}`;
    if (this.#observed?.record !== record) this.#observed = { record, at: now.getTime() };
    const durationMs = (lease.spec?.leaseDurationSeconds ?? Math.ceil(this.o.leaseDurationMs / 1000)) * 1000;
    const mine = holder === identity;
    if (!mine && holder !== '' && now.getTime() < this.#observed.at + durationMs) return 'other';
    const acquired = mine && lease.spec?.acquireTime ? new V1MicroTime(lease.spec.acquireTime) : now;
    const transitions = (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1);
    try {
      await coordination.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: spec(acquired, transitions) } });
    } catch (e) {
      // Someone else wrote it since the read: this round is theirs.
      if (statusCode(e) === 409) return mine ? 'failed' : 'other';
      throw e;
    }
    return 'held';
  }
}
