import type { AuditEvent } from '@gatehouse/audit';
import { describe, expect, it } from 'vitest';
import { JsonListWriter, json, summarizeEvent, table } from './output.js';

describe('table', () => {
  it('aligns columns and does not pad the last one', () => {
    expect(
      table(
        ['NAME', 'ROLES'],
        [
          ['alice', 'access,editor'],
          ['bob', ''],
        ],
      ),
    ).toBe('NAME   ROLES\n-----  -------------\nalice  access,editor\nbob\n');
  });
});

describe('summarizeEvent', () => {
  const base = { id: 'e1', time: '2026-01-01T00:00:00Z', code: 'GH1000I', cluster: 'acme', user: 'alice' };

  it('uses the type-specific fields, not the common ones', () => {
    const e = {
      ...base,
      type: 'user.login',
      success: false,
      method: 'password',
      reason: 'bad_password',
      error: 'no',
    };
    expect(summarizeEvent(e as unknown as AuditEvent)).toBe(
      'success=false method=password reason=bad_password error=no',
    );
  });

  it('puts the message first and renders lists and targets', () => {
    const e = { ...base, type: 'lock.create', message: 'incident 4', lock_id: 'l1', target: { user: 'bob' } };
    expect(summarizeEvent(e as unknown as AuditEvent)).toBe('incident 4 lock_id=l1 target=user:bob');
    const c = { ...base, type: 'user.create', name: 'bob', roles: ['access', 'dev'] };
    expect(summarizeEvent(c as unknown as AuditEvent)).toBe('name=bob roles=access,dev');
  });

  it('shortens long summaries', () => {
    const e = { ...base, type: 'user.logout', message: 'x'.repeat(300) };
    expect(summarizeEvent(e as unknown as AuditEvent)).toHaveLength(100);
  });
});

describe('JsonListWriter', () => {
  it('writes, page by page, the very text json() gives for the whole list', () => {
    const events = [
      { id: 'a', nested: { list: [1, { deep: true }], empty: {} }, text: 'two\nlines "quoted"' },
      { id: 'b', tags: [], n: 0 },
      { id: 'c' },
    ];
    for (const pages of [[], [[]], [events], [events.slice(0, 1), [], events.slice(1)]]) {
      const w = new JsonListWriter('events');
      const text = w.head() + pages.map((p) => w.items(p)).join('') + w.end();
      expect(text).toBe(json({ events: pages.flat() }));
      expect(JSON.parse(text)).toEqual({ events: pages.flat() });
    }
  });
});
