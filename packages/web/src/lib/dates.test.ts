import { describe, expect, it } from 'vitest';
import { parseDateInput } from './dates';

describe('parseDateInput', () => {
  it('accepts ISO 8601 with a zone as given', () => {
    expect(parseDateInput('2024-05-01T10:00:00Z', 'from')).toEqual({
      ok: true,
      iso: '2024-05-01T10:00:00.000Z',
    });
    expect(parseDateInput('2024-05-01T12:00+02:00', 'to')).toEqual({
      ok: true,
      iso: '2024-05-01T10:00:00.000Z',
    });
  });

  it('reads a date alone as the start of that local day for from and its end for to', () => {
    const from = parseDateInput('2024-05-01', 'from');
    const to = parseDateInput('2024-05-01', 'to');
    expect(from).toEqual({ ok: true, iso: new Date(2024, 4, 1).toISOString() });
    expect(to).toEqual({ ok: true, iso: new Date(2024, 4, 1, 23, 59, 59, 999).toISOString() });
  });

  it('reads a local date and time, with a space or a T', () => {
    const iso = new Date(2024, 4, 1, 9, 30).toISOString();
    expect(parseDateInput('2024-05-01 09:30', 'from')).toEqual({ ok: true, iso });
    expect(parseDateInput('2024-05-01T09:30', 'from')).toEqual({ ok: true, iso });
  });

  it('an empty field is no bound', () => {
    expect(parseDateInput('   ', 'from')).toEqual({ ok: true, iso: undefined });
  });

  it('refuses malformed and impossible dates with a message that says what to type', () => {
    for (const bad of [
      'last tuesday',
      '2024-5-1',
      '2024-02-30',
      '2024-13-01',
      '2024-05-01 25:00',
      '01/05/2024',
    ]) {
      const r = parseDateInput(bad, 'from');
      expect(r.ok, bad).toBe(false);
      if (!r.ok) expect(r.message).toContain('YYYY-MM-DD');
    }
  });

  it('reads years 0000-0099 as written (were read as 1900-1999, then refused)', () => {
    // fuzz counterexample "0000-01-01".
    const r = parseDateInput('0050-03-01 10:00', 'from');
    if (!r.ok || r.iso === undefined) throw new Error('refused');
    const d = new Date(r.iso);
    expect([d.getFullYear(), d.getMonth(), d.getDate(), d.getHours()]).toEqual([50, 2, 1, 10]);
    expect(parseDateInput('0000-01-01', 'from').ok).toBe(true);
  });
});
