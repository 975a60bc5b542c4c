/**
 * `ambit run --controller`: the node proxy's config comes from the controller's stream
 * instead of a file. Each merged response is assembled into a mesh config (node-local
 * settings from an optional base file first), validated and loaded by the same code as a
 * YAML file, then ACKed; a config that fails anywhere (schema, a filter package missing or
 * not matching its sha256 pin, a filter refusing its config, building the state) is NACKed
 * with the resources and JSON paths at fault, and the last good config keeps serving.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { MeshConfigError, resolveFilters, validateMeshConfig, type ConfigIssue, type LoadedMeshConfig } from '../config/index.js';
import { errorMessage } from '../deps.js';
import type { ConfigSource, SourceWatch } from '../node/source.js';
import type { Telemetry } from '../telemetry/types.js';
import { ControlPlaneError } from './errors.js';
import { ControllerIssuer } from './issuer.js';
import type { ControllerConnection } from './credentials.js';
import type { ErrorDetail, ResourceIssue } from './proto.js';
import { ConfigStream, type PendingConfig } from './stream.js';

export interface ControllerSourceOptions {
  connection: ControllerConnection;
  node: string;
  /** Node-local settings (proxy, capture, …) as a YAML file; lists in it come before the controller's. */
  baseConfig?: string;
  /** Where filter packages named by npm spec are installed (node_modules here or above). Default: the working directory. */
  filterRoot?: string;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  backoff?: { initialMs: number; maxMs: number; jitter: number };
}

export class ControllerSource implements ConfigSource {
  remoteIssuer?: { issuer: ControllerIssuer; source: string };
  #loaded: PendingConfig | undefined;
  #locate: (pointer: string) => ResourceIssue | undefined = () => undefined;
  #first: PendingConfig | undefined;
  /** A reload is queued that has not loaded yet. */
  #queued = false;

  private constructor(
    readonly stream: ConfigStream,
    private readonly options: ControllerSourceOptions,
    private readonly base: Record<string, unknown>,
  ) {}

  /**
   * Connects and waits for the first config this node can serve (NACKing the ones it
   * cannot), however long the controller takes.
   */
  static async connect(options: ControllerSourceOptions): Promise<ControllerSource> {
    let base: Record<string, unknown> = {};
    if (options.baseConfig) {
      const text = await readFile(options.baseConfig, 'utf8');
      base = (parseYaml(text) ?? {}) as Record<string, unknown>;
    }
    const stream = new ConfigStream({ connection: options.connection, node: options.node, log: options.log, backoff: options.backoff });
    const source = new ControllerSource(stream, options, base);
    await stream.start();
    for (let pending = await stream.first(); ; pending = await new Promise<PendingConfig>((r) => stream.once('update', r))) {
      try {
        const loaded = await source.load();
        await resolveFilters(loaded);
        await source.#ensureIssuer(loaded);
        source.#first = pending;
        return source;
      } catch (e) {
        options.log?.('error', `controller config ${pending.systemVersion} rejected, waiting for the next: ${errorMessage(e)}`);
        stream.nack(pending, source.#detail(e));
      }
    }
  }

  async load(): Promise<LoadedMeshConfig> {
    // From here on, a response merged later needs a reload of its own.
    this.#queued = false;
    this.#loaded = this.stream.latest;
    const { value, locate } = this.stream.resources.assemble(this.options.node, this.base);
    this.#locate = locate;
    const file = `controller ${this.options.connection.address}`;
    const issue = (pointer: string, message: string): ConfigIssue => ({ file, pointer, message });
    if (!this.stream.resources.mesh()) {
      throw new ControlPlaneError('AMBIT_ERR_CONTROLLER_PROTOCOL', 'the controller sent no mesh resource (trust domain, identity)');
    }
    const { config, warnings } = validateMeshConfig(value, issue);
    const root = path.resolve(this.options.filterRoot ?? process.cwd());
    return { config, file, path: path.join(root, 'controller-config.yaml'), warnings, issue };
  }

  watch(_loaded: LoadedMeshConfig, _resolved: unknown, reload: () => Promise<{ ok: boolean; error?: unknown }>, telemetry: Telemetry): SourceWatch {
    // Responses arriving while one is being applied are applied together, once: the reload
    // loads whatever has been merged by then, and its answer covers them.
    const onUpdate = (p: PendingConfig) => {
      if (this.#queued) return;
      this.#queued = true;
      telemetry.info(`controller: config ${p.systemVersion} received; applying`);
      void reload().then((outcome) => {
        const applied = this.#loaded ?? p;
        if (outcome.ok) this.stream.ack(applied);
        else this.stream.nack(applied, this.#detail(outcome.error));
      });
    };
    this.stream.on('update', onUpdate);
    return { update: () => undefined, close: () => this.stream.off('update', onUpdate) };
  }

  started(): void {
    if (this.#first) this.stream.ack(this.#first);
  }

  close(): void {
    this.stream.close();
    this.remoteIssuer?.issuer.close();
  }

  async #ensureIssuer(loaded: LoadedMeshConfig): Promise<void> {
    if (this.remoteIssuer || !loaded.config.identity?.ca.controller) return;
    const roots = this.stream.resources.mesh()?.roots;
    if (!roots) throw new ControlPlaneError('AMBIT_ERR_CONTROLLER_PROTOCOL', 'the controller asks for controller-signed certificates but sent no roots');
    const issuer = await ControllerIssuer.connect(this.options.connection, loaded.config.trustDomain, roots);
    this.remoteIssuer = { issuer, source: `controller ${this.options.connection.address}` };
  }

  /** A NACK's detail: the error's issues mapped back to resources and paths inside them. */
  #detail(e: unknown): ErrorDetail {
    const code = (e as { code?: unknown }).code;
    const issues: ResourceIssue[] = [];
    if (e instanceof MeshConfigError) {
      for (const i of e.issues) {
        const at = this.#locate(i.pointer);
        issues.push(at ? { ...at, message: i.message } : { resource: '', pointer: i.pointer, message: i.message });
      }
    } else {
      // Loader errors (an integrity mismatch) put the pointer in the message.
      const m = /(\/(?:bindings|services|workloads|nodes)\/\d+[^\s:]*)/.exec(errorMessage(e));
      const at = m ? this.#locate(m[1]!) : undefined;
      if (at) issues.push({ ...at, message: errorMessage(e) });
    }
    return { code: typeof code === 'string' ? code : 'AMBIT_ERR_MESH_CONFIG', message: errorMessage(e), issues };
  }
}
