/** One upstream address of a service, with the state load balancing and outlier detection keep. */
export interface OutlierPolicy {
  /** Consecutive 5xx (or connect/reset failures) that eject an endpoint. */
  consecutive5xx: number;
  /** First ejection lasts this long; the n-th lasts n times as long. */
  baseEjectionMs: number;
  /** Never eject more than this share of a service's endpoints. */
  maxEjectionPercent: number;
}

export const DEFAULT_OUTLIER: OutlierPolicy = { consecutive5xx: 5, baseEjectionMs: 30_000, maxEjectionPercent: 50 };

export class Endpoint {
  /** Requests (or connections) in flight. */
  active = 0;
  consecutiveFailures = 0;
  ejections = 0;
  ejectedUntil = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    /** Workload behind the address, when it is a mesh workload. */
    readonly workload?: { name: string; namespace: string; serviceAccount: string },
  ) {}

  get key(): string {
    return endpointKey(this.address, this.port);
  }

  ejected(now: number): boolean {
    return this.ejectedUntil > now;
  }
}

export function endpointKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
