/** What a binding's filter `ref` names: a path, or an npm package with a version range. */
import semver from 'semver';

export type FilterRef =
  | { kind: 'path'; path: string }
  | { kind: 'npm'; name: string; range: string | undefined };

const NPM_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

/**
 * Reads a ref. Paths: anything starting with `.` or `/` (or a Windows drive), containing
 * a `/` without being `@scope/name`, or ending in `.wasm` — relative to the config file.
 * Everything else is an npm spec: `name`, `name@range`, `@scope/name`, `@scope/name@range`
 * (`range` as npm takes it: `^1.2`, `1.2.3`, `>=1 <2`, `*`). Throws an Error saying what
 * is wrong (the caller adds file and JSON path).
 */
export function parseFilterRef(ref: string): FilterRef {
  if (ref.startsWith('.') || ref.startsWith('/') || /^[A-Za-z]:[\\/]/.test(ref) || ref.endsWith('.wasm')) {
    return { kind: 'path', path: ref };
  }
  const scoped = ref.startsWith('@');
  if (!scoped && (ref.includes('/') || ref.includes('\\'))) return { kind: 'path', path: ref };
  const at = ref.indexOf('@', scoped ? 1 : 0);
  const name = at < 0 ? ref : ref.slice(0, at);
  const range = at < 0 ? undefined : ref.slice(at + 1).trim();
  if (!NPM_NAME.test(name) || name.length > 214) {
    throw new Error(`${JSON.stringify(ref)} is neither a path (start it with ./ or ../) nor an npm package name such as @vendor/filter-x@^1.2`);
  }
  if (range !== undefined) {
    if (range === '') throw new Error(`${JSON.stringify(ref)} has an empty version range after @; write e.g. ${name}@^1.0 or just ${name}`);
    if (semver.validRange(range) === null) {
      throw new Error(`${JSON.stringify(ref)}: ${JSON.stringify(range)} is not a semver range (write e.g. ^1.2, ~1.2.3, 1.x or >=1.2 <2)`);
    }
  }
  return { kind: 'npm', name, range };
}
