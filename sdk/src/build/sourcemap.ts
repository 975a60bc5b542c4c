import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Rewrites `bundle.js:LINE:COL` references in a message to the filter's own
 * source positions, using the bundle's source map.
 */
export function mapBundlePositions(message: string, bundleName: string, map: SourceMapPayload, root: string, sourceMapDir: string): string {
  const sm = new SourceMap(map);
  const re = new RegExp(`/?${bundleName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\d+):(\\d+)`, 'g');
  return message.replace(re, (whole, l: string, c: string) => {
    const entry = sm.findEntry(Number(l) - 1, Number(c) - 1) as { originalSource?: string; originalLine?: number; originalColumn?: number };
    if (!entry || entry.originalSource === undefined || entry.originalLine === undefined) return whole;
    const src = entry.originalSource.startsWith('file:') ? fileURLToPath(entry.originalSource) : path.resolve(sourceMapDir, entry.originalSource);
    return `${path.relative(root, src)}:${entry.originalLine + 1}:${(entry.originalColumn ?? 0) + 1}`;
  });
}
