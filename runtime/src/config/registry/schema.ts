/**
 * `filterSource` in the mesh config: where npm filter refs (`@acme/filter-x@^1`) come
 * from. Unset: from `node_modules` (installed with npm next to the config or above).
 * With `registry`: resolved through that npm registry into the node's filter cache,
 * checked against the registry's integrity (SRI) and signatures, recorded in a lock file.
 */
import { Type, type Static } from '@sinclair/typebox';

export const FilterSourceSchema = Type.Object({
  registry: Type.String({
    pattern: '^https?://[^\\s]+$',
    description: 'The npm registry (its URL, as in .npmrc `registry=`) npm filter refs resolve from. Unset: from node_modules.',
  }),
  cacheDir: Type.Optional(Type.String({
    minLength: 1,
    description: 'Where resolved filter tarballs and their unpacked packages are kept (relative to this file or absolute). Default `$AMBIT_CACHE_DIR/filters`, else `~/.cache/ambit/filters`.',
  })),
  lockFile: Type.String({
    minLength: 1, default: 'ambit-filters.lock.json',
    description: 'The lock of resolved filter versions (relative to this file or absolute): each ref\'s version, tarball URL, integrity and what was verified. Read first, so a node with it (and a warm cache) never asks the registry. Default ambit-filters.lock.json.',
  }),
  frozenLock: Type.Boolean({
    default: false,
    description: 'Refuse a ref the lock file does not hold instead of resolving it and adding it (like `npm ci`). Default false.',
  }),
  requireSignatures: Type.Boolean({
    default: false,
    description: 'Refuse a package version the registry has no signature for. Signatures the registry does provide are always verified. Default false.',
  }),
  tokenEnv: Type.Optional(Type.String({
    pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
    description: 'Name of an environment variable holding a bearer token for the registry (private registries).',
  })),
  timeoutMs: Type.Integer({ minimum: 1, default: 30_000, description: 'Each registry request\'s time limit. Default 30 s.' }),
}, { additionalProperties: false, description: 'Where npm filter refs come from: an npm registry, a local cache and a lock file.' });

export type FilterSourceConfig = Static<typeof FilterSourceSchema>;
