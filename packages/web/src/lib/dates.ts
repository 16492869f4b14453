/**
 * The audit page's date inputs: ISO 8601 with a zone, or a local date
 * (YYYY-MM-DD) or local date and time (YYYY-MM-DD HH:MM[:SS], "T" allowed).
 * A date alone means the start of that day for "from" and its end for "to".
 */
export type DateParse = { ok: true; iso: string | undefined } | { ok: false; message: string };

const LOCAL = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?$/;
const ZONED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

export function parseDateInput(text: string, edge: 'from' | 'to'): DateParse {
  const t = text.trim();
  if (!t) return { ok: true, iso: undefined };
  const bad = {
    ok: false as const,
    message: `"${t}" is not a date: use YYYY-MM-DD, YYYY-MM-DD HH:MM (your local time) or ISO 8601 with a zone (2024-05-01T10:00:00Z)`,
  };
  if (ZONED.test(t)) {
    const ms = Date.parse(t);
    return Number.isNaN(ms) ? bad : { ok: true, iso: new Date(ms).toISOString() };
  }
  const m = LOCAL.exec(t);
  if (!m) return bad;
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? undefined : Number(x)));
  const hasTime = h !== undefined;
  // Not new Date(y, ...): it reads years 0-99 as 1900-1999.
  const date = new Date(2000, 0, 1);
  date.setFullYear(y!, mo! - 1, d!);
  date.setHours(h ?? 0, mi ?? 0, s ?? 0, 0);
  // new Date() rolls 2024-02-30 over to March: refuse instead of guessing.
  if (
    date.getFullYear() !== y ||
    date.getMonth() !== mo! - 1 ||
    date.getDate() !== d ||
    date.getHours() !== (h ?? 0) ||
    date.getMinutes() !== (mi ?? 0)
  ) {
    return bad;
  }
  if (!hasTime && edge === 'to') {
    date.setDate(date.getDate() + 1);
    date.setMilliseconds(-1);
  }
  return { ok: true, iso: date.toISOString() };
}
