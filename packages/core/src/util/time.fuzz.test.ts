import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoDate } from '../testing/arbitraries.js';
import { fuzz } from '../testing/fuzz.js';
import { parseIsoTime } from './time.js';

const p2 = (n: number) => String(n).padStart(2, '0');

describe('parseIsoTime (fuzz)', () => {
  it('reads back every instant written as ISO 8601, in any zone offset', () => {
    fuzz(
      fc.property(isoDate(), fc.integer({ min: -14 * 60, max: 14 * 60 }), (d, off) => {
        expect(parseIsoTime(d.toISOString())).toBe(d.getTime());
        const shifted = new Date(d.getTime() + off * 60_000);
        fc.pre(shifted.getUTCFullYear() >= 0 && shifted.getUTCFullYear() <= 9999);
        const zone = `${off < 0 ? '-' : '+'}${p2(Math.floor(Math.abs(off) / 60))}:${p2(Math.abs(off) % 60)}`;
        expect(parseIsoTime(`${shifted.toISOString().slice(0, 23)}${zone}`)).toBe(d.getTime());
      }),
      { runs: 2000 },
    );
  });

  it('never throws, refuses days a month does not have, and returns only finite times', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 30 }),
          fc.stringMatching(/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/),
        ),
        fc.boolean(),
        (text, local) => {
          const t = parseIsoTime(text, { local });
          if (t === undefined) return;
          expect(Number.isFinite(t)).toBe(true);
          const [y, mo, d] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
          const probe = new Date(0);
          probe.setUTCFullYear(y, mo - 1, d);
          expect(probe.getUTCDate()).toBe(d);
        },
      ),
      { runs: 3000 },
    );
  });
});
