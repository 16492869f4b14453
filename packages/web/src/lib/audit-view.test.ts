import { describe, expect, it } from 'vitest';
import { EVENT_CODES } from '../api/routes';
import {
  isSystemType,
  SYSTEM_EVENT_TYPES,
  shownOnPage,
  viewFromSearch,
  viewToQuery,
  viewToSearch,
  WARNING_TYPES,
} from './audit-view';

describe('audit view in the URL', () => {
  it('round-trips a view through the query string, leaving defaults out', () => {
    const v = {
      from: '2026-05-01T00:00:00.000Z',
      type: 'user.login',
      user: 'admin',
      q: 'two words',
      show: 'all' as const,
      event: 'ev-1',
    };
    const s = viewToSearch(v);
    expect(viewFromSearch(new URLSearchParams(s))).toEqual({ ...v, to: undefined });
    expect(viewToSearch({ show: 'user' })).toBe('');
  });

  it('drops unknown types and show values instead of guessing', () => {
    const v = viewFromSearch(new URLSearchParams('type=no.such&show=bogus&user=%20'));
    expect(v).toEqual({ show: 'user' });
  });

  it('hides system events by default, searches a picked type even when it is one', () => {
    const q = viewToQuery({ show: 'user' }, 50);
    expect(q.types).not.toContain('listener.reject');
    expect(q.types).toContain('user.login');
    expect(q.types).toContain('access.denied');
    expect(q.types!.length).toBe(Object.keys(EVENT_CODES).length - SYSTEM_EVENT_TYPES.length);
    expect(viewToQuery({ show: 'user', type: 'listener.reject' }, 50).types).toEqual(['listener.reject']);
    expect(viewToQuery({ show: 'all' }, 50).types).toBeUndefined();
    for (const t of SYSTEM_EVENT_TYPES) expect(Object.hasOwn(EVENT_CODES, t), t).toBe(true);
    expect(isSystemType('user.login')).toBe(false);
  });

  it('"warnings" searches the types that can warn and shows only their W/E events', () => {
    const q = viewToQuery({ show: 'warnings' }, 50);
    expect(q.types).toEqual(WARNING_TYPES);
    expect(WARNING_TYPES).toContain('user.login');
    expect(WARNING_TYPES).toContain('audit.dropped');
    expect(WARNING_TYPES).not.toContain('role.create');
    expect(shownOnPage({ show: 'warnings' }, { code: 'GH1000I' })).toBe(false);
    expect(shownOnPage({ show: 'warnings' }, { code: 'GH1001W' })).toBe(true);
    expect(shownOnPage({ show: 'user' }, { code: 'GH1000I' })).toBe(true);
  });
});
