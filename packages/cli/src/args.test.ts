import { GatehouseError } from '@gatehouse/core';
import { describe, expect, it } from 'vitest';
import {
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
  });

  it('accepts ISO times', () => {
    expect(parseTimeFlag('2026-02-01T00:00:00Z', now)).toBe('2026-02-01T00:00:00.000Z');
    expect(parseTimeFlag('2026-02-01', now)).toBe('2026-02-01T00:00:00.000Z');
  });

  it('rejects anything else', () => {
    expect(() => parseTimeFlag('yesterday', now, '--until')).toThrow(/--until "yesterday"/);
    expect(() => parseTimeFlag('5', now)).toThrow(/neither a duration/);
  });
});

describe('parsePositiveInt and relativeTime', () => {
  it('parses limits', () => {
    expect(parsePositiveInt('--limit')('25')).toBe(25);
    expect(() => parsePositiveInt('--limit')('0')).toThrow(/positive/);
    expect(() => parsePositiveInt('--limit')('2.5')).toThrow(/positive/);
  });

  it('renders expiry distances', () => {
    const now = new Date('2026-03-01T12:00:00Z');
    expect(relativeTime(new Date('2026-03-01T19:59:30Z'), now)).toBe('in 7h59m');
    expect(relativeTime(new Date('2026-03-01T11:57:00Z'), now)).toBe('3m ago');
    expect(relativeTime(new Date('2026-03-01T12:00:05Z'), now)).toBe('in 5s');
  });
});
