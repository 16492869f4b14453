import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AuditEventInput } from '../events.js';
import { SqliteAuditIndex } from '../index-sqlite.js';
import type { AuditQuery } from '../query.js';
import { FailingSink, MemoryAuditLog } from './index.js';

describe('MemoryAuditLog', () => {
  it('fills fields like the real log and finds events by type', async () => {
    const log = new MemoryAuditLog({ cluster: 'acme', clock: () => new Date(Date.UTC(2026, 0, 1)) });
    const e = await log.emit({
      type: 'user.login',
      success: true,
      method: 'password',
      mfa: false,
      user: 'alice',
    });
    await log.emit({ type: 'user.logout', user: 'alice' });
    await log.emit({ type: 'user.login', success: true, method: 'invite', mfa: true, user: 'bob' });
    expect(e).toMatchObject({ code: 'GH1000I', cluster: 'acme', time: '2026-01-01T00:00:00.000Z' });
    expect(log.events).toHaveLength(3);
    expect(log.find('user.login').map((x) => x.user)).toEqual(['alice', 'bob']);
    expect(log.last('user.login')?.method).toBe('invite');
    expect(log.last('gateway.stop')).toBeUndefined();
    await expect(log.emit({ type: 'nope' } as never)).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });

  it('searches with the same results as the SQLite index', async () => {
    let t = Date.UTC(2026, 0, 1);
    const mem = new MemoryAuditLog({ clock: () => new Date(t) });
    const dir = await mkdtemp(join(tmpdir(), 'gh-audit-mem-'));
    const index = new SqliteAuditIndex({ path: join(dir, 'i.db') });
    try {
      const inputs: AuditEventInput[] = [
        { type: 'user.logout', user: 'alice', message: 'Bye (NEAR) "quoted"' },
        { type: 'role.create', user: 'bob', name: 'dev-ops' },
        {
          type: 'access.denied',
          user: 'alice',
          resource_kind: 'db',
          resource: 'orders',
          reason: 'Zoë said no',
        },
        { type: 'gateway.stop' },
      ];
      for (let i = 0; i < 40; i++) {
        const e = await mem.emit(inputs[i % inputs.length] as AuditEventInput);
        index.write(e);
        if (i % 3 === 0) t += 1000; // several events share a millisecond
      }
      const queries: AuditQuery[] = [
        {},
        { limit: 7 },
        { user: 'alice' },
        { types: ['role.create', 'gateway.stop'], limit: 3 },
        { from: '2026-01-01T00:00:03Z', to: '2026-01-01T00:00:09Z' },
        { q: 'near QUOTED' },
        { q: 'zoe' },
        { q: 'dev ops' },
        { q: 'ops dev' },
        { q: 'dev-ops' },
        { q: 'ops-dev' },
        { q: '* (' },
        { q: 'acme' },
        { q: 'alice', types: ['access.denied'], limit: 4 },
      ];
      for (const q of queries) {
        let cursorM: string | undefined;
        let cursorS: string | undefined;
        let pages = 0;
        do {
          const m = await mem.search({ ...q, ...(cursorM ? { cursor: cursorM } : {}) });
          const s = await index.search({ ...q, ...(cursorS ? { cursor: cursorS } : {}) });
          expect({ q, ids: m.events.map((e) => e.id) }).toEqual({ q, ids: s.events.map((e) => e.id) });
          expect(m.next_cursor).toBe(s.next_cursor);
          cursorM = m.next_cursor;
          cursorS = s.next_cursor;
          pages++;
        } while (cursorM && pages < 50);
      }
      // The queries above are not vacuous.
      expect((await mem.search({ q: 'zoe' })).events).toHaveLength(10);
      expect((await mem.search({ q: 'dev-ops' })).events).toHaveLength(10);
      expect((await mem.search({ q: 'ops-dev' })).events).toHaveLength(0);
    } finally {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('FailingSink', () => {
  it('refuses writes until recovered and counts attempts', async () => {
    const sink = new FailingSink({ error: 'down' });
    const e = await new MemoryAuditLog().emit({ type: 'gateway.stop' });
    await expect(sink.write(e)).rejects.toThrow('down');
    sink.recover();
    await sink.write(e);
    sink.fail('again');
    await expect(sink.write(e)).rejects.toThrow('again');
    expect(sink.attempts).toBe(3);
    expect(sink.events).toEqual([e]);
  });
});
