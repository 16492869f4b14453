import { describe, expect, it } from 'vitest';
import { parseIsoTime } from './time.js';

describe('parseIsoTime', () => {
  it('reads dates and date-times with a zone', () => {
    expect(parseIsoTime('2026-01-31')).toBe(Date.parse('2026-01-31T00:00:00Z'));
    expect(parseIsoTime('2026-01-31T12:00Z')).toBe(Date.parse('2026-01-31T12:00:00Z'));
    expect(parseIsoTime('2026-01-31T12:00:05.1234Z')).toBe(Date.parse('2026-01-31T12:00:05.123Z'));
    expect(parseIsoTime('2026-01-31T12:00:00+02:30')).toBe(Date.parse('2026-01-31T09:30:00Z'));
    expect(parseIsoTime('2026-01-31T12:00:00-05:00')).toBe(Date.parse('2026-01-31T17:00:00Z'));
    expect(parseIsoTime('2024-02-29')).toBe(Date.parse('2024-02-29T00:00:00Z'));
    expect(parseIsoTime('0050-06-01')).toBe(Date.parse('0050-06-01T00:00:00Z'));
  });

  it('refuses what Date.parse guesses at: no rollover, no bare numbers, no words', () => {
    for (const bad of [
      'zzz',
      '',
      '1',
      'May 5',
      '2026-02-30',
      '2025-02-29',
      '2026-13-01',
      '2026-00-10',
      '2026-01-31T24:00Z',
      '2026-01-31T12:60Z',
      '2026-01-31T12:00:61Z',
      '2026-01-31T12:00+24:00',
      '2026-01-31T12',
      ' 2026-01-31',
      '2026-01-31Z',
    ]) {
      expect(parseIsoTime(bad), bad).toBeUndefined();
      expect(parseIsoTime(bad, { local: true }), bad).toBeUndefined();
    }
  });

  it('a date-time without a zone, or with a space, is local time on a command line only', () => {
    expect(parseIsoTime('2026-01-31T12:00')).toBeUndefined();
    expect(parseIsoTime('2026-01-31 12:00Z')).toBeUndefined();
    expect(parseIsoTime('2026-01-31T12:00', { local: true })).toBe(new Date(2026, 0, 31, 12, 0).getTime());
    expect(parseIsoTime('2026-01-31 12:00:30', { local: true })).toBe(
      new Date(2026, 0, 31, 12, 0, 30).getTime(),
    );
  });
});
