import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz, onlyCode } from '../testing/fuzz.js';
import { formatDuration, isDuration, parseDuration } from './duration.js';

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const unit = fc.constantFrom(...(Object.keys(UNIT_MS) as (keyof typeof UNIT_MS)[]));

/** Duration-like text: digits, dots and unit letters in any order, plus any text at all. */
const durationish = fc.oneof(
  fc.string({ unit: fc.constantFrom('1', '0', '9', '.', 'm', 's', 'h', 'd', ' ', 'x'), maxLength: 16 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  // Long enough to overflow a double.
  fc.tuple(fc.integer({ min: 1, max: 400 }), unit).map(([n, u]) => `${'9'.repeat(n)}${u}`),
);

describe('durations (fuzz)', () => {
  it('parseDuration throws only GH_ERR_VALIDATION and returns a finite, non-negative number of ms', () => {
    fuzz(
      fc.property(durationish, (t) => {
        const ms = onlyCode('GH_ERR_VALIDATION', () => parseDuration(t));
        expect(isDuration(t)).toBe(ms !== undefined);
        if (ms === undefined) return;
        expect(Number.isFinite(ms)).toBe(true);
        expect(ms).toBeGreaterThanOrEqual(0);
      }),
      { runs: 3000 },
    );
  });

  it('adds up the parts of a compound duration', () => {
    fuzz(
      fc.property(fc.array(fc.tuple(fc.nat(10_000), unit), { minLength: 1, maxLength: 5 }), (parts) => {
        const text = parts.map(([n, u]) => `${n}${u}`).join('');
        expect(parseDuration(text)).toBe(parts.reduce((sum, [n, u]) => sum + n * UNIT_MS[u], 0));
      }),
      { runs: 1000 },
    );
  });

  it('parseDuration reads back formatDuration to the second', () => {
    fuzz(
      fc.property(fc.integer({ min: 0, max: 10 * 365 * 86_400_000 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms < 500 ? ms : Math.round(ms / 1000) * 1000);
      }),
      { runs: 1000 },
    );
  });
});
