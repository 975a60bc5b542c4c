import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface MappedMessage {
  /** The message with every bundle position replaced by a source position. */
  text: string;
  /**
   * The first mapped position in the filter's own sources (inside `root`, outside
   * node_modules), as `file:line:column` relative to `root`; undefined if none.
   */
  origin: string | undefined;
}

/**
 * Rewrites `…/bundle.js:LINE:COL` references in a message (whatever path or URL
 * precedes the bundle's name, since engines report it relative to their own root and
 * Node as a file: URL, possibly with a query) to the filter's own source positions, using the bundle's source map.
 * Positions are reported relative to `root`.
 */
export function mapBundlePositions(message: string, bundleName: string, map: SourceMapPayload, root: string, sourceMapDir: string): string {
  return mapBundleMessage(message, bundleName, map, root, sourceMapDir).text;
}

export function mapBundleMessage(message: string, bundleName: string, map: SourceMapPayload, root: string, sourceMapDir: string): MappedMessage {
  const sm = new SourceMap(map);
  const re = new RegExp(`(?:[^\\s()'"\`]*/)?${escapeRe(bundleName)}(?:\\?[^\\s():]*)?:(\\d+):(\\d+)`, 'g');
  let origin: string | undefined;
  const text = message.replace(re, (whole, l: string, c: string) => {
    const entry = sm.findEntry(Number(l) - 1, Math.max(0, Number(c) - 1)) as {
      originalSource?: string; originalLine?: number; originalColumn?: number;
    };
    if (!entry || entry.originalSource === undefined || entry.originalLine === undefined) return whole;
    const src = entry.originalSource.startsWith('file:') ? fileURLToPath(entry.originalSource) : path.resolve(sourceMapDir, entry.originalSource);
    const rel = path.relative(root, src);
    const pos = `${rel}:${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`;
    const own = !rel.startsWith('..') && !path.isAbsolute(rel) && !rel.split(path.sep).includes('node_modules');
    if (own && origin === undefined) origin = pos;
    return pos;
  });
  return { text, origin };
}
