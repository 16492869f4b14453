import { GatehouseError } from '@gatehouse/core';
import { describe, expect, it } from 'vitest';
import {
  checkTimeRange,
  parseDuration,
  parsePositiveInt,
  parseTimeFlag,
  parseTraits,
  relativeTime,
  splitList,
} from './args.js';

describe('parseDuration', () => {
  it('reads single and compound durations', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('8h')).toBe(28_800_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
  });

  it('rejects junk with a hint', () => {
    for (const bad of ['', '8', 'h', '8x', '1h junk', '0s', '-1h']) {
      const e = (() => {
        try {
          parseDuration(bad, '--ttl');
        } catch (err) {
          return err;
        }
      })();
      expect(e, bad).toBeInstanceOf(GatehouseError);
      expect((e as GatehouseError).message, bad).toContain('--ttl');
      expect((e as GatehouseError).hint, bad).toContain('8h');
    }
  });
});

describe('splitList and parseTraits', () => {
  it('splits comma lists across repeated flags', () => {
    expect(splitList('a,b, c')).toEqual(['a', 'b', 'c']);
    expect(splitList(['a', 'b,,c'])).toEqual(['a', 'b', 'c']);
    expect(splitList(undefined)).toEqual([]);
  });

  it('parses k=v1,v2 and merges repeated keys', () => {
    expect(parseTraits(['db_users=reader,writer', 'kube_groups=dev', 'db_users=reader,admin'])).toEqual({
      db_users: ['reader', 'writer', 'admin'],
      kube_groups: ['dev'],
    });
    expect(parseTraits(['empty='])).toEqual({ empty: [] });
    expect(parseTraits(undefined)).toEqual({});
  });

  it('rejects items without a key', () => {
    expect(() => parseTraits(['reader'])).toThrow(/KEY=VALUE/);
    expect(() => parseTraits(['=reader'])).toThrow(/KEY=VALUE/);
    expect(() => parseTraits(['a b=c'])).toThrow(/KEY=VALUE/);
  });
});

describe('parseTimeFlag', () => {
  const now = new Date('2026-03-01T12:00:00.000Z');

  it('treats a duration as "that long ago"', () => {
    expect(parseTimeFlag('1h', now)).toBe('2026-03-01T11:00:00.000Z');
    expect(parseTimeFlag('2d', now)).toBe('2026-02-27T12:00:00.000Z');
    expect(parseTimeFlag(' 1h30m ', now)).toBe('2026-03-01T10:30:00.000Z');
  });

  it('accepts ISO times; without a zone they are local time', () => {
    expect(parseTimeFlag('2026-02-01T00:00:00Z', now)).toBe('2026-02-01T00:00:00.000Z');
    expect(parseTimeFlag('2026-02-01', now)).toBe('2026-02-01T00:00:00.000Z');
    expect(parseTimeFlag('2026-02-01T10:00+02:00', now)).toBe('2026-02-01T08:00:00.000Z');
    expect(parseTimeFlag('2026-02-01 10:00', now)).toBe(new Date(2026, 1, 1, 10, 0).toISOString());
  });

  it('refuses anything else, naming the flag, the value and the accepted forms (zzz was ignored)', () => {
    for (const bad of [
      'zzz',
      '',
      ' ',
      'yesterday',
      '5',
      '0s',
      '1hzzz',
      '2026-02-30',
      '2026-13-01',
      '99999999d',
    ]) {
      const e = (() => {
        try {
          parseTimeFlag(bad, now, '--until');
        } catch (err) {
          return err;
        }
      })();
      expect(e, bad).toBeInstanceOf(GatehouseError);
      const msg = (e as GatehouseError).message;
      expect(msg, bad).toContain(`--until "${bad}" is not a time`);
      expect(msg, bad).toContain('1h30m');
      expect(msg, bad).toContain('2026-01-31T12:00:00Z');
    }
  });

  it('--since after --until is refused', () => {
    expect(() => checkTimeRange('2026-02-02T00:00:00.000Z', '2026-02-01T00:00:00.000Z')).toThrow(
      /--since .* is after --until/,
    );
    expect(() => checkTimeRange('2026-02-01T00:00:00.000Z', '2026-02-02T00:00:00.000Z')).not.toThrow();
    expect(() => checkTimeRange(undefined, '2026-02-02T00:00:00.000Z')).not.toThrow();
  });
});

describe('parsePositiveInt and relativeTime', () => {
  it('parses limits written in plain digits, up to a maximum', () => {
    expect(parsePositiveInt('--limit')('25')).toBe(25);
    for (const bad of ['0', '2.5', '1e3', '0x10', '-1', '', 'ten']) {
      expect(() => parsePositiveInt('--limit')(bad), bad).toThrow(/positive whole number/);
    }
    const capped = parsePositiveInt('--limit', { max: 1000, why: 'pages hold 1000' });
    expect(capped('1000')).toBe(1000);
    expect(() => capped('1000000000')).toThrow('--limit 1000000000 is more than 1000');
  });

  it('renders expiry distances', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    expect(relativeTime(new Date('2026-03-01T19:59:30Z'), now)).toBe('in 7h59m');
    expect(relativeTime(new Date('2026-03-01T11:57:00Z'), now)).toBe('3m ago');
    expect(relativeTime(new Date('2026-03-01T12:00:05Z'), now)).toBe('in 5s');
  });
});
