import { fuzz, type Generated } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDateInput } from './dates';

const p2 = (n: number) => String(n).padStart(2, '0');
const pad4 = (n: number) => String(n).padStart(4, '0');
const ZONES = [
  'UTC',
  'America/New_York',
  'Europe/Berlin',
  'Asia/Kolkata',
  'Pacific/Chatham',
  'Australia/Lord_Howe',
];
const zone = fc.constantFrom(...ZONES);

const savedTz = process.env.TZ;
afterEach(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

/** A wall-clock date and time as someone types it (any year a Date holds with four digits). */
const local = fc.record({
  y: fc.integer({ min: 0, max: 9999 }),
  mo: fc.integer({ min: 1, max: 12 }),
  d: fc.integer({ min: 1, max: 31 }),
  h: fc.integer({ min: 0, max: 23 }),
  mi: fc.integer({ min: 0, max: 59 }),
  s: fc.option(fc.integer({ min: 0, max: 59 }), { nil: undefined }),
  sep: fc.constantFrom(' ', 'T'),
  withTime: fc.boolean(),
});

/** Whether that wall-clock time exists in the current zone (not in a DST gap) on a real calendar day. */
function exists(v: Generated<typeof local>): boolean {
  const daysIn = new Date(Date.UTC(2000, v.mo, 0)).getUTCDate();
  const leap = (v.y % 4 === 0 && v.y % 100 !== 0) || v.y % 400 === 0;
  if (v.d > (v.mo === 2 ? (leap ? 29 : 28) : daysIn)) return false;
  if (!v.withTime) return true;
  const d = new Date(2000, v.mo - 1, v.d, v.h, v.mi, v.s ?? 0);
  d.setFullYear(v.y, v.mo - 1, v.d);
  d.setHours(v.h, v.mi, v.s ?? 0, 0);
  return d.getHours() === v.h && d.getMinutes() === v.mi;
}

describe('date inputs (fuzz)', () => {
  it('never throws, and every accepted input is a real ISO time', () => {
    fuzz(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 30 }),
          fc.stringMatching(/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?)?$/),
        ),
        fc.constantFrom('from' as const, 'to' as const),
        (text, edge) => {
          const r = parseDateInput(text, edge);
          if (r.ok && r.iso !== undefined) expect(new Date(r.iso).toISOString()).toBe(r.iso);
          if (!r.ok) expect(r.message.length).toBeGreaterThan(0);
        },
      ),
      { runs: 2000 },
    );
  });

  it('reads ISO 8601 with a zone as the instant it names, whatever the local zone', () => {
    fuzz(
      fc.property(
        fc.date({
          min: new Date('0001-01-02T00:00:00Z'),
          max: new Date('9999-12-30T00:00:00Z'),
          noInvalidDate: true,
        }),
        fc.integer({ min: -14 * 60, max: 14 * 60 }),
        zone,
        (d, offsetMin, tz) => {
          process.env.TZ = tz;
          const shifted = new Date(d.getTime() + offsetMin * 60_000);
          const sign = offsetMin < 0 ? '-' : '+';
          const off = `${sign}${p2(Math.floor(Math.abs(offsetMin) / 60))}:${p2(Math.abs(offsetMin) % 60)}`;
          const text = `${shifted.toISOString().slice(0, 23)}${off}`;
          expect(parseDateInput(text, 'from')).toEqual({ ok: true, iso: d.toISOString() });
        },
      ),
      { runs: 1000 },
    );
  });

  it('reads every local date and time that exists, refuses the ones that do not, in any zone', () => {
    fuzz(
      fc.property(local, zone, (v, tz) => {
        process.env.TZ = tz;
        const text = `${pad4(v.y)}-${p2(v.mo)}-${p2(v.d)}${v.withTime ? `${v.sep}${p2(v.h)}:${p2(v.mi)}${v.s === undefined ? '' : `:${p2(v.s)}`}` : ''}`;
        const from = parseDateInput(text, 'from');
        if (!exists(v)) {
          expect(from.ok).toBe(false);
          return;
        }
        if (!from.ok || from.iso === undefined) throw new Error(`refused ${text} in ${tz}`);
        const got = new Date(from.iso);
        expect([got.getFullYear(), got.getMonth() + 1, got.getDate()]).toEqual([v.y, v.mo, v.d]);
        if (v.withTime) expect([got.getHours(), got.getMinutes()]).toEqual([v.h, v.mi]);
        const to = parseDateInput(text, 'to');
        if (!to.ok || to.iso === undefined) throw new Error(`refused ${text} as "to"`);
        expect(Date.parse(to.iso)).toBeGreaterThanOrEqual(Date.parse(from.iso));
      }),
      { runs: 2000 },
    );
  });
});
