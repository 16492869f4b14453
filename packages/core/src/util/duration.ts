import { GatehouseError } from '../errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/;

/** Parses Go-style durations: "90s", "30m", "8h", "1h30m", "2d". */
export function parseDuration(text: string): number {
  let rest = text.trim();
  if (rest === '') throw badDuration(text);
  let total = 0;
  while (rest.length > 0) {
    const m = DURATION_RE.exec(rest);
    if (!m) throw badDuration(text);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  // "999...9h" overflows to Infinity, which no timer or date can hold.
  if (!Number.isFinite(total)) throw badDuration(text);
  return Math.round(total);
}

export function isDuration(text: string): boolean {
  try {
    parseDuration(text);
    return true;
  } catch {
    // Not a duration is an answer here, not a failure.
    return false;
  }
}

/** Renders milliseconds the way parseDuration reads them back ("8h", "1h30m"). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms / 1000);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('') || `${ms}ms`;
}

function badDuration(text: string): GatehouseError {
  return new GatehouseError('GH_ERR_VALIDATION', `"${text}" is not a duration`, {
    hint: 'write durations like 30s, 15m, 8h or 1h30m',
  });
}
