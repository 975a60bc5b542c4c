/**
 * Reads and checks a mesh config file: YAML → JSON Schema (ajv, defaults filled in) →
 * semantic checks. Every problem names the file, the line and column where the YAML has
 * them, the JSON path and what was expected:
 *
 *     AMBIT_ERR_MESH_CONFIG: mesh.yaml:14:15: /services/0/ports/0/port: must be <= 65535
 *
 * All problems of a file are reported at once (one per line) in a `MeshConfigError`
 * (code AMBIT_ERR_MESH_CONFIG, also at the start of its message), whose `issues` carry
 * them as data.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { AmbitError, errorMessage } from '../deps.js';
import { canonicalIp, formatHostPort, parseHostPort, serviceKeyOfHost } from '../mesh/address.js';
import { selectorMatches } from '../mesh/labels.js';
import { parseFilterRef } from './ref.js';
import { MeshConfigSchema, type MeshConfig } from './schema.js';

/** One problem (or warning) in a config file. */
export interface ConfigIssue {
  /** The file as the caller named it. */
  file: string;
  /** JSON pointer into the config (`/services/0/ports/0/port`); `` for the whole file. */
  pointer: string;
  /** 1-based, where the YAML source has the node. */
  line?: number;
  col?: number;
  /** What was expected, e.g. `must be <= 65535`. */
  message: string;
}

/** `file:line:col: /pointer: message` (`file: /pointer: message` without a position). */
export function formatIssue(issue: ConfigIssue): string {
  const at = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}:${issue.col ?? 1}`;
  return `${at}: ${issue.pointer === '' ? '/' : issue.pointer}: ${issue.message}`;
}

export class MeshConfigError extends AmbitError {
  constructor(readonly issues: ConfigIssue[], options?: { cause?: unknown }) {
    // The code leads the message so that it is in every log line and terminal that shows one.
    super('AMBIT_ERR_MESH_CONFIG', `AMBIT_ERR_MESH_CONFIG: ${issues.map(formatIssue).join('\n')}`, options);
    this.name = 'MeshConfigError';
  }
}

/** A config that passed every check, with what is needed to report on it later. */
export interface LoadedMeshConfig {
  config: MeshConfig;
  /** The file as the caller named it (used in messages). */
  file: string;
  /** Its absolute path: relative filter refs start from its folder. */
  path: string;
  /** Things that work but probably are not what was meant (a selector matching nothing…). */
  warnings: ConfigIssue[];
  /**
   * An issue at a JSON pointer of this file, with line and column where known: of the
   * value, or of its key with `preferKey` (for "unknown property").
   */
  issue(pointer: string, message: string, preferKey?: boolean): ConfigIssue;
}

/** The mesh config's JSON Schema, for editors (yaml-language-server) and `ambit schema`. */
export function meshConfigJsonSchema(): Record<string, unknown> {
  const schema = JSON.parse(JSON.stringify(MeshConfigSchema)) as Record<string, unknown>;
  // Properties with a default are required in the validating schema (so the types say
  // they are always there after loading) but optional to whoever writes the file.
  const relax = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(relax);
    if (!node || typeof node !== 'object') return;
    const o = node as Record<string, unknown>;
    const props = o.properties as Record<string, Record<string, unknown>> | undefined;
    if (props && Array.isArray(o.required)) {
      o.required = (o.required as string[]).filter((k) => props[k]?.default === undefined);
      if ((o.required as string[]).length === 0) delete o.required;
    }
    for (const v of Object.values(o)) relax(v);
  };
  relax(schema);
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...schema };
}

const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true });
const validateSchema = ajv.compile<MeshConfig>(MeshConfigSchema);

/** Reads, validates and checks a mesh config file. Throws MeshConfigError. */
export async function loadMeshConfig(file: string): Promise<LoadedMeshConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new MeshConfigError([{ file, pointer: '', message: `cannot read the mesh config: ${errorMessage(e)}` }], { cause: e });
  }
  return parseMeshConfig(text, file);
}

/** Like `loadMeshConfig` on text already read; `fileName` is used in messages and as the base for relative refs. */
export function parseMeshConfig(text: string, fileName: string): LoadedMeshConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const source = new SourceLocator(doc, lineCounter);
  const issue = (pointer: string, message: string, preferKey = false): ConfigIssue => ({
    file: fileName, pointer, ...source.position(pointer, preferKey), message,
  });
  if (doc.errors.length > 0) {
    throw new MeshConfigError(doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      return { file: fileName, pointer: '', line: pos.line, col: pos.col, message: `YAML: ${e.message.split('\n')[0]}` };
    }));
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    throw new MeshConfigError([{ file: fileName, pointer: '', message: `YAML: ${errorMessage(e)}` }], { cause: e });
  }
  if (value === null || value === undefined) {
    throw new MeshConfigError([{ file: fileName, pointer: '', message: 'the file is empty; expected a mesh config (at least `node: <name>`)' }]);
  }
  const checked = validateMeshConfig(value, issue);
  checked.warnings.push(...doc.warnings.map((w) => {
    const pos = lineCounter.linePos(w.pos[0]);
    return { file: fileName, pointer: '', line: pos.line, col: pos.col, message: `YAML: ${w.message.split('\n')[0]}` };
  }));
  return { config: checked.config, file: fileName, path: path.resolve(fileName), warnings: checked.warnings, issue };
}

/**
 * Validates a config given as a value (from YAML, JSON or a control plane), filling in
 * defaults in place. `source` names it in messages, or places each problem in a source
 * (as `parseMeshConfig` does with line and column). Throws MeshConfigError.
 */
export function validateMeshConfig(
  value: unknown,
  source: string | ((pointer: string, message: string, preferKey?: boolean) => ConfigIssue),
): { config: MeshConfig; warnings: ConfigIssue[] } {
  const issue = typeof source === 'string'
    ? (pointer: string, message: string): ConfigIssue => ({ file: source, pointer, message })
    : source;
  if (!validateSchema(value)) {
    throw new MeshConfigError(schemaIssues(validateSchema.errors ?? [], issue));
  }
  const config = value;
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  checkSemantics(config, (p, m) => errors.push(issue(p, m)), (p, m) => warnings.push(issue(p, m)));
  if (errors.length > 0) throw new MeshConfigError(errors);
  return { config, warnings };
}

// ---------------------------------------------------------------------------------------
// Schema errors → issues

interface AjvError extends ErrorObject {
  parentSchema?: { description?: string; properties?: Record<string, unknown> };
}

function schemaIssues(
  raw: readonly ErrorObject[],
  issue: (pointer: string, message: string, preferKey?: boolean) => ConfigIssue,
): ConfigIssue[] {
  const errors = pickUnionBranches(raw as AjvError[]);
  const out: ConfigIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    let pointer = e.instancePath;
    let message = e.message ?? e.keyword;
    let preferKey = false;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String((e.params as { additionalProperty: string }).additionalProperty);
        pointer = `${pointer}/${prop.replace(/~/g, '~0').replace(/\//g, '~1')}`;
        const known = Object.keys(e.parentSchema?.properties ?? {});
        message = known.length > 0 ? `unknown property; expected one of: ${known.join(', ')}` : 'unknown property';
        preferKey = true;
        break;
      }
      case 'enum':
        message = `must be one of: ${((e.params as { allowedValues: unknown[] }).allowedValues).map((v) => String(v)).join(', ')}`;
        break;
      case 'anyOf':
        message = e.parentSchema?.description ? `must be ${e.parentSchema.description}` : 'must match one of the allowed forms';
        break;
      case 'pattern':
        if (e.parentSchema?.description) message = `${message}: ${e.parentSchema.description}`;
        break;
      case 'type':
        message = `${message}, got ${describe(e.data)}`;
        break;
      default:
        break;
    }
    const key = `${pointer}\0${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(issue(pointer, message, preferKey));
  }
  return out;
}

function describe(value: unknown): string {
  if (value === null) return 'null (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

/**
 * ajv reports every branch of a failed `anyOf`. When exactly one branch has the right
 * shape (its keys are there, no unknown ones), report that branch's errors — the user
 * meant it; otherwise report the `anyOf` alone, with its description of the forms.
 */
function pickUnionBranches(errors: AjvError[]): AjvError[] {
  const unions = errors.filter((e) => e.keyword === 'anyOf');
  if (unions.length === 0) return errors;
  const drop = new Set<AjvError>();
  for (const u of unions) {
    const prefix = `${u.schemaPath.slice(0, -'/anyOf'.length)}/anyOf/`;
    const branches = new Map<string, AjvError[]>();
    for (const e of errors) {
      if (e === u || !e.schemaPath.startsWith(prefix)) continue;
      const branch = e.schemaPath.slice(prefix.length).split('/')[0]!;
      let list = branches.get(branch);
      if (!list) branches.set(branch, (list = []));
      list.push(e);
      drop.add(e);
    }
    const shapeError = (e: AjvError) =>
      e.instancePath === u.instancePath && ['additionalProperties', 'required', 'type'].includes(e.keyword);
    const fitting = [...branches.values()].filter((list) => !list.some(shapeError));
    if (fitting.length === 1) {
      drop.add(u);
      for (const e of fitting[0]!) drop.delete(e);
    }
  }
  return errors.filter((e) => !drop.has(e));
}

// ---------------------------------------------------------------------------------------
// JSON pointer → line:col

class SourceLocator {
  constructor(private readonly doc: Document, private readonly lines: LineCounter) {}

  position(pointer: string, preferKey: boolean): { line?: number; col?: number } {
    const segments = pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let node: unknown = this.doc.contents;
    let at: number | undefined = rangeStart(node);
    let keyAt: number | undefined;
    for (const seg of segments) {
      if (isAlias(node)) node = node.resolve(this.doc);
      keyAt = undefined;
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === seg);
        if (!pair) break;
        keyAt = rangeStart(pair.key);
        at = keyAt ?? at;
        node = pair.value;
        const v = rangeStart(node);
        if (v !== undefined && !(isScalar(node) && node.value === null && node.source === '')) at = v;
      } else if (isSeq(node)) {
        const item: unknown = node.items[Number(seg)];
        if (item === undefined) break;
        node = item;
        at = rangeStart(node) ?? at;
      } else {
        break;
      }
    }
    if (preferKey && keyAt !== undefined) at = keyAt;
    if (at === undefined) return {};
    const pos = this.lines.linePos(at);
    return { line: pos.line, col: pos.col };
  }
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return range ? range[0] : undefined;
}

// ---------------------------------------------------------------------------------------
// Checks JSON Schema cannot say

type Report = (pointer: string, message: string) => void;

function checkSemantics(config: MeshConfig, error: Report, warn: Report): void {
  const listeners = new Map<string, string>();
  const checkListener = (pointer: string, l: { address: string; port: number }) => {
    const ip = canonicalIp(l.address);
    if (!ip) return error(`${pointer}/address`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(l.address)}`);
    const key = formatHostPort(ip, l.port);
    const other = listeners.get(key);
    if (other) error(`${pointer}/port`, `${key} is already the ${other} listener; give each listener its own port`);
    else listeners.set(key, pointer.split('/').pop()!);
  };
  checkListener('/proxy/outbound', config.proxy.outbound);
  checkListener('/proxy/inbound', config.proxy.inbound);
  checkListener('/proxy/admin', config.proxy.admin);
  if (config.identity) {
    checkListener('/proxy/hbone', config.proxy.hbone);
    checkIdentity(config, error);
  }
  const nodeNames = checkNodes(config, error);

  const workloads = new Map<string, number>();
  const workloadByIp = new Map<string, string>();
  config.workloads.forEach((w, i) => {
    const at = `/workloads/${i}`;
    w.node ??= config.node;
    const key = `${w.name}.${w.namespace}`;
    const dup = workloads.get(key);
    if (dup !== undefined) error(`${at}/name`, `workload ${key} is already defined at /workloads/${dup}`);
    else workloads.set(key, i);
    const ip = canonicalIp(w.address);
    if (!ip) return error(`${at}/address`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(w.address)}`);
    const other = workloadByIp.get(ip);
    if (other) error(`${at}/address`, `${ip} is already the address of workload ${other}; workload addresses must be unique`);
    else workloadByIp.set(ip, key);
  });

  if (config.identity) {
    const unreachable = new Set(config.workloads.map((w) => w.node ?? config.node).filter((n) => n !== config.node && !nodeNames.has(n)));
    for (const n of unreachable) {
      warn('/nodes', `node ${n} has workloads but no entry in nodes (its HBONE address): traffic to its workloads goes in plaintext, straight to the workload`);
    }
  }
  for (const field of ['redirectAddress', 'redirectAddress6'] as const) {
    const value = config.capture[field];
    if (value === undefined) continue;
    const ip = canonicalIp(value);
    const family = field === 'redirectAddress' ? 4 : 6;
    if (!ip || isIP(ip) !== family) error(`/capture/${field}`, `must be an IPv${family} address, got ${JSON.stringify(value)}`);
  }

  const services = new Map<string, number>();
  const vipPorts = new Map<string, string>();
  config.services.forEach((s, i) => {
    const at = `/services/${i}`;
    const key = `${s.name}.${s.namespace}`;
    const dup = services.get(key);
    if (dup !== undefined) error(`${at}/name`, `service ${key} is already defined at /services/${dup}`);
    else services.set(key, i);

    const subsets = new Map<string, number>();
    s.subsets?.forEach((sub, j) => {
      const seen = subsets.get(sub.name);
      if (seen !== undefined) error(`${at}/subsets/${j}/name`, `subset ${sub.name} is already defined at ${at}/subsets/${seen}; subset names must be unique within a service`);
      else subsets.set(sub.name, j);
    });

    const ports = new Map<number, number>();
    const names = new Map<string, number>();
    s.ports.forEach((p, j) => {
      p.targetPort ??= p.port;
      const d = ports.get(p.port);
      if (d !== undefined) error(`${at}/ports/${j}/port`, `port ${p.port} is already listed at ${at}/ports/${d}`);
      else ports.set(p.port, j);
      if (p.name !== undefined) {
        const n = names.get(p.name);
        if (n !== undefined) error(`${at}/ports/${j}/name`, `port name ${p.name} is already used at ${at}/ports/${n}`);
        else names.set(p.name, j);
      }
    });

    if (s.vip !== undefined) {
      const vip = canonicalIp(s.vip);
      if (!vip) {
        error(`${at}/vip`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(s.vip)}`);
      } else {
        const w = workloadByIp.get(vip);
        if (w) error(`${at}/vip`, `${vip} is the address of workload ${w}; a VIP must not be a workload address`);
        for (const p of s.ports) {
          const k = formatHostPort(vip, p.port);
          const other = vipPorts.get(k);
          if (other && other !== key) error(`${at}/vip`, `${k} is already service ${other}'s; two services cannot share a VIP and port`);
          else vipPorts.set(k, key);
        }
      }
    }

    (s.endpoints ?? []).forEach((e, j) => {
      if (!canonicalIp(e.address)) error(`${at}/endpoints/${j}/address`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(e.address)}`);
      if (e.port !== undefined && s.ports.length > 1) {
        error(`${at}/endpoints/${j}/port`, `an endpoint of a multi-port service takes each port's targetPort; remove port (or split the service)`);
      }
      const named = s.ports.find((p) => typeof p.targetPort === 'string');
      if (e.port === undefined && named && !workloadByIp.has(canonicalIp(e.address) ?? e.address)) {
        error(`${at}/endpoints/${j}/port`, `port ${named.port}'s targetPort is the name ${String(named.targetPort)}, which only workloads resolve (namedPorts); give this endpoint its port`);
      }
    });

    const hasSelector = s.selector !== undefined && Object.keys(s.selector).length > 0;
    if (hasSelector) {
      const matched = config.workloads.some((w) => w.namespace === s.namespace && selectorMatches(s.selector, w.labels));
      if (!matched) {
        warn(`${at}/selector`, `selects no workload in namespace ${s.namespace} (labels ${JSON.stringify(s.selector)}); the service has ${s.endpoints?.length ? 'only its explicit endpoints' : 'no endpoints'}`);
      }
    } else if (!s.endpoints?.length) {
      warn(at, `service ${key} has neither a selector nor endpoints: requests to it will fail with 503 (no healthy upstream)`);
    }
  });

  const target = config.proxy.outbound.target;
  if (target !== undefined) {
    const at = '/proxy/outbound/target';
    const hp = parseHostPort(target);
    if (!hp) {
      error(at, `must be <ip>:<port>, [<ipv6>]:<port> or <service>.<namespace>:<port>, got ${JSON.stringify(target)}`);
    } else if (hp.kind === 'name') {
      const key = serviceKeyOfHost(hp.host);
      const si = key === undefined ? undefined : services.get(key);
      if (si === undefined) {
        error(at, `${hp.host} is not a service of this config (services: ${[...services.keys()].join(', ') || 'none'}); use <service>.<namespace>:<port> or <ip>:<port>`);
      } else if (!config.services[si]!.ports.some((p) => p.port === hp.port)) {
        error(at, `service ${key} has no port ${hp.port} (ports: ${config.services[si]!.ports.map((p) => p.port).join(', ')})`);
      }
    }
  }

  const namespaces = new Set([...config.workloads.map((w) => w.namespace), ...config.services.map((s) => s.namespace)]);
  const bindings = new Map<string, number>();
  config.bindings.forEach((b, i) => {
    const at = `/bindings/${i}`;
    const dup = bindings.get(b.name);
    if (dup !== undefined) error(`${at}/name`, `binding ${b.name} is already defined at /bindings/${dup}`);
    else bindings.set(b.name, i);
    const t = b.target;
    if ('service' in t && !services.has(t.service)) {
      error(`${at}/target/service`, `no service ${t.service} in this config (services: ${[...services.keys()].join(', ') || 'none'})`);
    } else if ('workload' in t && !workloads.has(t.workload)) {
      error(`${at}/target/workload`, `no workload ${t.workload} in this config (workloads: ${[...workloads.keys()].join(', ') || 'none'})`);
    } else if ('namespace' in t && !namespaces.has(t.namespace)) {
      warn(`${at}/target/namespace`, `no service or workload is in namespace ${t.namespace}: the binding applies to nothing`);
    }
    b.filters.forEach((f, j) => {
      try {
        parseFilterRef(f.ref);
      } catch (e) {
        error(`${at}/filters/${j}/ref`, errorMessage(e));
      }
    });
  });
}

/** `identity.ca`: a folder, or a certificate and key file. */
function checkIdentity(config: MeshConfig, error: Report): void {
  const ca = config.identity!.ca;
  const files = ca.certFile !== undefined || ca.keyFile !== undefined || ca.chainFile !== undefined || ca.rootFile !== undefined;
  if (ca.controller) {
    if (ca.dir !== undefined || files) error('/identity/ca', 'controller: true means the controller signs; remove dir and the CA files (a node must not hold the CA key)');
    return;
  }
  if (ca.dir !== undefined && files) {
    error('/identity/ca', 'give either dir, or certFile and keyFile (with chainFile, rootFile), not both');
  } else if (ca.dir === undefined && (ca.certFile === undefined || ca.keyFile === undefined)) {
    error('/identity/ca', 'needs dir (a folder to load the CA from, or to generate one in on first start), or certFile and keyFile');
  }
}

/** `nodes`: unique names, IP addresses. Returns the names. */
function checkNodes(config: MeshConfig, error: Report): Set<string> {
  const names = new Map<string, number>();
  config.nodes.forEach((n, i) => {
    const dup = names.get(n.name);
    if (dup !== undefined) error(`/nodes/${i}/name`, `node ${n.name} is already listed at /nodes/${dup}`);
    else names.set(n.name, i);
    if (!canonicalIp(n.address)) error(`/nodes/${i}/address`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(n.address)}`);
  });
  return new Set(names.keys());
}
