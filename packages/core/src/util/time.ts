/**
 * ISO 8601 times as people and programs write them: `2026-01-31`,
 * `2026-01-31T12:00Z`, `2026-01-31T12:00:00.123+02:00`. Stricter than
 * Date.parse, which takes "1" for the year 2001 and rolls 2026-02-30 over to
 * March: a search bound that is not what the user meant must be refused, not
 * guessed.
 */
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:([T ])(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;

export interface IsoTimeOptions {
  /**
   * Also take a date-time without a zone (local time) and a space instead of
   * the `T`, as typed on a command line. Off: a date-time needs `T` and a
   * zone (`Z` or `+02:00`), as the HTTP API takes it.
   */
  local?: boolean;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : DAYS[month - 1]!;
}

/** Date.UTC and new Date(y, ...) read years 0-99 as 1900-1999; setFullYear does not. */
function at(utc: boolean, y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number {
  const t = new Date(0);
  if (utc) {
    t.setUTCFullYear(y, mo - 1, d);
    t.setUTCHours(h, mi, s, ms);
  } else {
    t.setFullYear(y, mo - 1, d);
    t.setHours(h, mi, s, ms);
  }
  return t.getTime();
}

/**
 * Milliseconds since the epoch, or undefined when `text` is not a real ISO
 * 8601 date or date-time. A date alone is midnight UTC (as Date.parse reads it).
 */
export function parseIsoTime(text: string, opts: IsoTimeOptions = {}): number | undefined {
  const m = ISO_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, sep, h, mi, s, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (h === undefined) return at(true, year, month, day);
  if (!opts.local && (sep !== 'T' || zone === undefined)) return undefined;
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s ?? '0');
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = Number((frac ?? '').padEnd(3, '0').slice(0, 3));
  if (zone === undefined) return at(false, year, month, day, hour, minute, second, ms);
  const utc = at(true, year, month, day, hour, minute, second, ms);
  if (zone === 'Z') return utc;
  const oh = Number(zone.slice(1, 3));
  const om = Number(zone.slice(4, 6));
  if (oh > 23 || om > 59) return undefined;
  return utc - (zone[0] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
}
