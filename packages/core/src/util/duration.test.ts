import { describe, expect, it } from 'vitest';
import { formatDuration, isDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads Go-style durations', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('1.5d')).toBe(129_600_000);
    expect(formatDuration(5_400_000)).toBe('1h30m');
  });

  it('refuses a duration too large for a number (returned Infinity)', () => {
    // fuzz counterexample: 309 nines and "h" parsed as Infinity ms, which no timer or Date can hold.
    const huge = `${'9'.repeat(309)}h`;
    expect(() => parseDuration(huge)).toThrow(expect.objectContaining({ code: 'GH_ERR_VALIDATION' }));
    expect(isDuration(huge)).toBe(false);
  });
});
