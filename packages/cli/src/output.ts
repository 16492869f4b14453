import type { AuditEvent } from '@gatehouse/audit';

/** A plain aligned table: what people grep and read in a terminal. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/**
 * `json({ [key]: items })`, text for text, written as the items arrive, so
 * an export of any length is neither held in memory nor delayed to the end.
 */
export class JsonListWriter {
  #count = 0;
  constructor(readonly key: string) {}

  head(): string {
    return `{\n  ${JSON.stringify(this.key)}: [`;
  }

  items(values: readonly unknown[]): string {
    let text = '';
    for (const v of values) {
      // Newlines inside values are escaped by JSON, so every raw one starts an indented line.
      text += `${this.#count++ === 0 ? '' : ','}\n    ${JSON.stringify(v, null, 2).replaceAll('\n', '\n    ')}`;
    }
    return text;
  }

  end(): string {
    return this.#count === 0 ? ']\n}\n' : '\n  ]\n}\n';
  }
}

const COMMON = new Set(['id', 'time', 'code', 'type', 'cluster', 'user', 'message', 'addr', 'session_id']);

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return v.length > 60 ? `${v.slice(0, 57)}...` : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const entries = Object.entries(v).filter(([, x]) => typeof x === 'string');
    if (entries.length) return entries.map(([k, x]) => `${k}:${x as string}`).join(',');
  }
  return undefined;
}

/** One line per event for the audit table: its message, else its own fields as k=v. */
export function summarizeEvent(e: AuditEvent): string {
  const rec = e as unknown as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof rec.message === 'string' && rec.message) parts.push(rec.message);
  for (const [k, v] of Object.entries(rec)) {
    if (COMMON.has(k)) continue;
    const s = scalar(v);
    if (s !== undefined && s !== '') parts.push(`${k}=${s}`);
  }
  const text = parts.join(' ');
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}
