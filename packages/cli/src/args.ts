import { GatehouseError } from '@gatehouse/core';

/** Flag values parsed here are pure functions of their text (and `now`), so they are unit-tested without a CLI. */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30s", "15m", "8h", "1h30m", "2d" -> milliseconds. */
export function parseDuration(text: string, flag = 'duration'): number {
  const src = text.trim();
  let rest = src;
  let total = 0;
  while (rest.length > 0) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/.exec(rest);
    if (!m) break;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (src === '' || rest.length > 0 || total <= 0) {
    throw new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is not a duration`, {
      hint: 'write durations like 30s, 15m, 8h, 1h30m or 2d',
    });
  }
  return Math.round(total);
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

/** `--since 1h` (relative to now) or an ISO 8601 time -> ISO string. */
export function parseTimeFlag(text: string, now: Date, flag = '--since'): string {
  const t = text.trim();
  if (/^\d+(?:\.\d+)?(?:ms|s|m|h|d)/.test(t)) {
    return new Date(now.getTime() - parseDuration(t, flag)).toISOString();
  }
  // Only full dates: Date.parse accepts too much ("1", "May") to be a safe guess.
  const ms = /^\d{4}-\d{2}-\d{2}/.test(t) ? Date.parse(t) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is neither a duration nor an ISO time`, {
      hint: `write ${flag} 1h (one hour ago) or ${flag} 2026-01-31T12:00:00Z`,
    });
  }
  return new Date(ms).toISOString();
}

export function parsePositiveInt(flag: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      throw new GatehouseError('GH_ERR_VALIDATION', `${flag} "${text}" is not a positive whole number`, {
        hint: `e.g. ${flag} 100`,
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
