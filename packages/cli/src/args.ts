import { parseDuration as coreDuration, GatehouseError, parseIsoTime } from '@gatehouse/core';

/** Flag values parsed here are pure functions of their text (and `now`), so they are unit-tested without a CLI. */

const DURATION_FORMS = '30s, 15m, 8h, 1h30m or 2d';

/** "30s", "15m", "8h", "1h30m", "2d" -> milliseconds (more than zero). */
export function parseDuration(text: string, flag = 'duration'): number {
  let ms = 0;
  try {
    ms = coreDuration(text);
  } catch {
    // Not a duration: said below with the flag's name and the accepted forms.
  }
  if (!(ms > 0)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is not a duration`, {
      hint: `write durations like ${DURATION_FORMS}`,
    });
  }
  return ms;
}

/** Validates a duration flag and hands the text on unchanged (the API takes "8h"-style strings). */
export function durationFlag(flag: string): (text: string) => string {
  return (text) => {
    parseDuration(text, flag);
    return text.trim();
  };
}

/** "a,b, c" -> ["a","b","c"]; empty items are dropped. Repeated flags are concatenated. */
export function splitList(values: string | string[] | undefined): string[] {
  if (values === undefined) return [];
  const arr = Array.isArray(values) ? values : [values];
  return arr
    .flatMap((v) => v.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `--traits k=v1,v2 k2=v3` -> { k: [v1, v2], k2: [v3] }; a repeated key adds values. */
export function parseTraits(values: string[] | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const item of values ?? []) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? '' : item.slice(0, eq).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `trait "${item}" is not KEY=VALUE[,VALUE]`, {
        hint: 'write traits like --traits db_users=reader,writer kube_groups=dev',
      });
    }
    const vals = splitList(item.slice(eq + 1));
    const list = out[key] ?? [];
    for (const v of vals) if (!list.includes(v)) list.push(v);
    out[key] = list;
  }
  return out;
}

const TIME_FORMS =
  `a duration ago (${DURATION_FORMS}) or an ISO 8601 date or time ` +
  '(2026-01-31, 2026-01-31T12:00, 2026-01-31T12:00:00Z; without a zone it is local time)';

/** `--since 1h` (that long before `now`) or an ISO 8601 date or time -> ISO string (UTC). */
export function parseTimeFlag(text: string, now: Date, flag = '--since'): string {
  const t = text.trim();
  const bad = () =>
    new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is not a time: write ${TIME_FORMS}`, {
      hint: `e.g. ${flag} 1h (one hour ago) or ${flag} 2026-01-31T12:00:00Z`,
    });
  let ms: number | undefined;
  if (/^\d+(?:\.\d+)?(?:ms|s|m|h|d)/.test(t)) {
    let ago = 0;
    try {
      ago = parseDuration(t, flag);
    } catch {
      throw bad();
    }
    ms = now.getTime() - ago;
  } else {
    ms = parseIsoTime(t, { local: true });
  }
  // A 4-digit year, as ISO 8601 and the API take it ("99999999d ago" is not one).
  const year = ms === undefined ? Number.NaN : new Date(ms).getUTCFullYear();
  if (ms === undefined || !(year >= 0 && year <= 9999)) throw bad();
  return new Date(ms).toISOString();
}

/** A time flag for commander: validated as it is parsed, so even an empty value cannot slip through. */
export function timeFlag(flag: string, now: () => Date): (text: string) => string {
  return (text) => parseTimeFlag(text, now(), flag);
}

/** `--since` must not be after `--until`: such a search can only come back empty. */
export function checkTimeRange(since: string | undefined, until: string | undefined): void {
  if (since !== undefined && until !== undefined && since > until) {
    throw new GatehouseError('GH_ERR_VALIDATION', `--since (${since}) is after --until (${until})`, {
      hint: 'swap them: --since is the older end of the range',
    });
  }
}

/** A whole number of at least 1 (and at most `max`), written in plain digits. */
export function parsePositiveInt(flag: string, max?: { max: number; why: string }): (text: string) => number {
  return (text) => {
    const n = /^\d{1,15}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
    if (!(n >= 1)) {
      throw new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is not a positive whole number`, {
        hint: `e.g. ${flag} 100`,
      });
    }
    if (max && n > max.max) {
      throw new GatehouseError('GH_ERR_VALIDATION', `${flag} ${n} is more than ${max.max}`, {
        hint: max.why,
      });
    }
    return n;
  };
}

/** "in 7h59m" / "3m ago", for expiry lines. */
export function relativeTime(target: Date, now: Date): string {
  const diff = target.getTime() - now.getTime();
  const s = Math.round(Math.abs(diff) / 1000);
  const parts: string[] = [];
  let rest = s;
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (parts.length === 0) parts.push(`${rest}s`);
  const text = parts.slice(0, 2).join('');
  return diff >= 0 ? `in ${text}` : `${text} ago`;
}
