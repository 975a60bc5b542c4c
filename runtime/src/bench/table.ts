/** Plain-text and Markdown tables, and number formatting for them. */

export type Align = 'l' | 'r';

export interface Table {
  title: string;
  headers: string[];
  align: Align[];
  /** Rows; an empty array draws a blank line (text) between groups. */
  rows: string[][];
  notes?: string[];
}

export function renderText(t: Table): string {
  const body = t.rows.filter((r) => r.length > 0);
  const widths = t.headers.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (t.align[i] === 'r' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [t.title, line(t.headers), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of t.rows) out.push(r.length ? line(r) : '');
  for (const n of t.notes ?? []) out.push(`  ${n}`);
  return out.join('\n');
}

export function renderMarkdown(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  const out = [`### ${t.title}`, '', `| ${t.headers.map(esc).join(' | ')} |`, `|${t.align.map((a) => (a === 'r' ? '---:' : ':---')).join('|')}|`];
  for (const r of t.rows) if (r.length) out.push(`| ${r.map(esc).join(' | ')} |`);
  if (t.notes?.length) out.push('', ...t.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

/** Microseconds or milliseconds with about three significant digits. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString('en-US');
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function fmtRate(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

export function fmtRatio(n: number): string {
  if (!Number.isFinite(n)) return '–';
  return `×${n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)}`;
}

export function fmtMiB(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(2) : '–';
}
