/**
 * The node proxy's end of `MeshConfig.StreamConfig`: opens the stream, merges the
 * controller's incremental responses into a ResourceSet, and answers each one with an ACK
 * or a NACK once the proxy has tried it. While the controller is away the proxy keeps
 * serving its last config; the stream reconnects with backoff (0.5 s doubling to 30 s,
 * ±20 % jitter; back to 0.5 s once a response arrives) and tells the controller which
 * resource versions it holds, so only the difference is sent again.
 */
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { controllerChannel, tokenMetadata, type ControllerConnection } from './credentials.js';
import { controllerProto, type ConfigRequest, type ConfigResponse, type ErrorDetail } from './proto.js';
import { ResourceSet } from './resources.js';

export const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000, jitter: 0.2 } as const;

export interface ConfigStreamOptions {
  connection: ControllerConnection;
  node: string;
  backoff?: { initialMs: number; maxMs: number; jitter: number };
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

/** A merged response waiting for the proxy's verdict. */
export interface PendingConfig {
  readonly nonce: string;
  readonly systemVersion: string;
}

export interface ConfigStream {
  on(event: 'update', listener: (pending: PendingConfig) => void): this;
  on(event: 'connected' | 'disconnected', listener: () => void): this;
}

type Call = grpc.ClientDuplexStream<ConfigRequest, ConfigResponse>;

export class ConfigStream extends EventEmitter {
  readonly resources = new ResourceSet();
  #client: grpc.Client | undefined;
  #call: Call | undefined;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The last response merged (answered or not). */
  #latest: PendingConfig | undefined;
  /** The system version the proxy serves. */
  #applied = '';
  #connected = false;

  constructor(private readonly options: ConfigStreamOptions) {
    super();
  }

  get latest(): PendingConfig | undefined {
    return this.#latest;
  }

  get appliedVersion(): string {
    return this.#applied;
  }

  get connected(): boolean {
    return this.#connected;
  }

  async start(): Promise<void> {
    const { credentials, options } = await controllerChannel(this.options.connection);
    this.#client = new (controllerProto().MeshConfig)(this.options.connection.address, credentials, {
      ...options,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    this.#open();
  }

  /** The first response, however long the controller takes. */
  first(): Promise<PendingConfig> {
    if (this.#latest) return Promise.resolve(this.#latest);
    return new Promise((resolve) => this.once('update', resolve));
  }

  /** The proxy serves the config of `pending` now. */
  ack(pending: PendingConfig): void {
    this.#applied = pending.systemVersion;
    this.#send({ node: this.options.node, responseNonce: pending.nonce, appliedVersion: this.#applied, initialResourceVersions: {} });
  }

  /** The proxy could not apply `pending`; it keeps serving `appliedVersion`. */
  nack(pending: PendingConfig, detail: ErrorDetail): void {
    this.#send({ node: this.options.node, responseNonce: pending.nonce, appliedVersion: this.#applied, errorDetail: detail, initialResourceVersions: {} });
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#call?.cancel();
    this.#client?.close();
  }

  #send(req: ConfigRequest): void {
    try {
      this.#call?.write(req);
    } catch {
      // The stream is gone; the reconnect's first message says where the proxy stands.
    }
  }

  #open(): void {
    if (this.#closed || !this.#client) return;
    void tokenMetadata(this.options.connection).then((md) => {
      if (this.#closed) return;
      const method = (this.#client as unknown as Record<string, (md: grpc.Metadata) => Call>).streamConfig!;
      const call = method.call(this.#client, md);
      this.#call = call;
      let ended = false;
      const end = (why: string) => {
        if (ended) return;
        ended = true;
        if (this.#call === call) this.#call = undefined;
        if (this.#connected) {
          this.#connected = false;
          this.emit('disconnected');
        }
        this.#retry(why);
      };
      call.on('data', (res: ConfigResponse) => this.#onResponse(res));
      call.on('error', (e: grpc.ServiceError) => end(e.details || e.message));
      call.on('end', () => end('the controller ended the stream'));
      call.write({
        node: this.options.node, responseNonce: '', appliedVersion: this.#applied, initialResourceVersions: this.resources.versions(),
      });
    }, (e: unknown) => this.#retry((e as Error).message));
  }

  #onResponse(res: ConfigResponse): void {
    this.#attempt = 0;
    if (!this.#connected) {
      this.#connected = true;
      this.options.log?.('info', 'controller: config stream connected');
      this.emit('connected');
    }
    try {
      this.resources.apply(res.resources, res.removed);
    } catch (e) {
      this.nack({ nonce: res.nonce, systemVersion: res.systemVersion }, { code: 'AMBIT_ERR_CONTROLLER_PROTOCOL', message: (e as Error).message, issues: [] });
      return;
    }
    this.#latest = { nonce: res.nonce, systemVersion: res.systemVersion };
    this.emit('update', this.#latest);
  }

  #retry(why: string): void {
    if (this.#closed) return;
    const b = this.options.backoff ?? DEFAULT_BACKOFF;
    const base = Math.min(b.maxMs, b.initialMs * 2 ** this.#attempt++);
    const delay = Math.round(base * (1 - b.jitter + Math.random() * 2 * b.jitter));
    this.options.log?.('warn', `controller: config stream down (${why}); serving the last config, reconnecting in ${delay} ms`);
    this.#timer = setTimeout(() => this.#open(), delay);
    this.#timer.unref();
  }
}
