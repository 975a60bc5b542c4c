/**
 * @internal The engine's native functions (`globalThis.__ambit`, defined in
 * `sdk/engine/src/guest.c`): one per function of the `ambit:filter@0.2.0` world.
 * Resource handles are numbers, valid for the call that lent them. Records come back
 * as arrays; `undefined` stands for `none`.
 */
export interface Natives {
  ctxDirection(ctx: number): 0 | 1;
  /** [identity, workload, namespace, address, port] */
  ctxSource(ctx: number): PeerTuple;
  ctxDestination(ctx: number): PeerTuple;
  /** The peer's key: the same peer, the same key, for the instance's life; 0: do not keep. */
  ctxSourceKey(ctx: number): number;
  ctxDestinationKey(ctx: number): number;
  ctxService(ctx: number): string | undefined;
  ctxRoute(ctx: number): string | undefined;
  ctxRequestId(ctx: number): string;
  ctxAttempt(ctx: number): number;
  /** [version, cipher, sni] */
  ctxTls(ctx: number): [string, string, string | undefined] | undefined;

  reqMethod(req: number): string;
  reqScheme(req: number): string;
  reqAuthority(req: number): string;
  reqPath(req: number): string;
  reqSetMethod(req: number, value: string): void;
  reqSetAuthority(req: number, value: string): void;
  reqSetPath(req: number, value: string): void;
  resStatus(res: number): number;
  resSetStatus(res: number, status: number): void;

  reqGet(req: number, name: string): string | undefined;
  resGet(res: number, name: string): string | undefined;
  reqGetAll(req: number, name: string): string[];
  resGetAll(res: number, name: string): string[];
  reqHas(req: number, name: string): boolean;
  resHas(res: number, name: string): boolean;
  reqSet(req: number, name: string, value: string): void;
  resSet(res: number, name: string, value: string): void;
  reqAppend(req: number, name: string, value: string): void;
  resAppend(res: number, name: string, value: string): void;
  reqRemove(req: number, name: string): void;
  resRemove(res: number, name: string): void;
  reqSize(req: number): number;
  resSize(res: number): number;
  reqEntries(req: number): Array<[string, string]>;
  resEntries(res: number): Array<[string, string]>;

  /** level: 0 trace, 1 debug, 2 info, 3 warn, 4 error */
  log(level: number, message: string): void;
  counterAdd(name: string, delta: number): void;
  now(): number;
  monotonic(): number;
  random(): number;
  /** [value, version] */
  sharedGet(key: string): [string, number] | undefined;
  sharedSet(key: string, value: string, version: number): boolean;
  sharedAdd(key: string, delta: number): number;
  delayRequest(ms: number): void;
  routeToSubset(subset: string): void;
  setPerTryTimeout(ms: number): void;
  upstreamError(): string | undefined;
  /** [active requests, active retries] */
  upstreamLoad(): [number, number];
  reportError(message: string): void;
}

export type PeerTuple = [string | undefined, string | undefined, string | undefined, string, number];

/** What the engine calls (`globalThis.__ambitHandler`). */
export interface EngineHandler {
  configure(json: string): { name: string; phases: number } | { invalid: string };
  /** undefined: allow; a string: deny with that reason. */
  onConnection(ctx: number): string | undefined;
  onRequest(ctx: number, req: number): unknown;
  onResponse(ctx: number, req: number, res: number): unknown;
}

/** The natives outside a component (unit tests of SDK code in Node): every call says why it cannot work. */
export function natives(): Natives {
  const n = (globalThis as { __ambit?: Natives }).__ambit;
  if (!n) throw new Error('the Ambit host is only available inside a built filter (run it with the SDK harness or a node proxy)');
  return n;
}
