import { mkdir, mkdtemp, rename, rm, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditEventInput } from './events.js';
import { createIdGenerator } from './id.js';
import { SqliteAuditIndex } from './index-sqlite.js';
import type { AuditQuery } from './query.js';
import { auditIndexContract, makeEvent } from './testing/index-contract.js';

auditIndexContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gh-audit-idx-'));
  const path = join(dir, 'db', 'audit.db');
  const index = new SqliteAuditIndex({ path });
  return {
    index,
    second: async () => new SqliteAuditIndex({ path }),
    cleanup: async () => {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

let dir: string;
let index: SqliteAuditIndex;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-audit-idx-'));
  index = new SqliteAuditIndex({ path: join(dir, 'db', 'audit.db') });
});
afterEach(async () => {
  await index.close();
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 0, 1);

function make(input: AuditEventInput, ms: number, gen = createIdGenerator(() => ms)): AuditEvent {
  return makeEvent(input, ms, gen);
}

describe('SqliteAuditIndex', () => {
  it('creates its database 0600', async () => {
    const e = make({ type: 'user.logout', user: 'alice' }, T0);
    index.write(e);
    index.write(e);
    index.write({ ...e, message: 'a replay with the same id' });
    expect(index.count()).toBe(1);
    expect((await index.search({})).events).toEqual([e]);
    expect((await stat(join(dir, 'db', 'audit.db'))).mode & 0o777).toBe(0o600);
  });

  it('finds replayed events by free text once, and drops the insert trigger of older indexes', async () => {
    const path = join(dir, 'old.db');
    const gen = createIdGenerator(() => T0);
    // An index made by an earlier version: its FTS rows came from an insert trigger.
    const old = new Database(path);
    old.exec(`CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
      type TEXT NOT NULL, code TEXT NOT NULL, user TEXT, session_id TEXT, json TEXT NOT NULL);
      CREATE VIRTUAL TABLE events_fts USING fts5(json, content='events', content_rowid='seq',
        tokenize='unicode61 remove_diacritics 2');
      CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
        INSERT INTO events_fts(rowid, json) VALUES (new.seq, new.json);
      END;`);
    const before = make({ type: 'user.logout', user: 'alice', message: 'zebra before' }, T0, gen);
    old
      .prepare(
        'INSERT INTO events (id, time, type, code, user, session_id, json) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(before.id, before.time, before.type, before.code, 'alice', null, JSON.stringify(before));
    old.close();

    const idx = new SqliteAuditIndex({ path });
    try {
      const after = make({ type: 'user.logout', user: 'alice', message: 'zebra after' }, T0 + 1, gen);
      idx.write(after);
      idx.writeBatch([after, before]);
      idx.write(after);
      const found = await idx.search({ q: 'zebra' });
      expect(found.events.map((e) => e.message)).toEqual(['zebra after', 'zebra before']);
      expect((await idx.search({ q: 'after' })).events).toEqual([after]);
    } finally {
      await idx.close();
    }
    const check = new Database(path, { readonly: true });
    try {
      const triggers = check.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all();
      expect(triggers).toEqual([{ name: 'events_fts_delete' }]);
      // One FTS row per event: a duplicate would show as two matches for the same rowid.
      const n = check.prepare("SELECT count(*) AS n FROM events_fts WHERE events_fts MATCH 'zebra'").get();
      expect(n).toEqual({ n: 2 });
    } finally {
      check.close();
    }
  });

  it('indexes only the new events of a batch that mixes replays and new ones, also after retention deleted the newest rows', async () => {
    const gen = createIdGenerator(() => T0);
    const a = make({ type: 'user.logout', user: 'alice', message: 'walrus a' }, T0, gen);
    const b = make({ type: 'user.logout', user: 'alice', message: 'walrus b' }, T0 + 1, gen);
    const c = make({ type: 'user.logout', user: 'alice', message: 'walrus c' }, T0 + 2, gen);
    index.writeBatch([a, b]);
    // Retention removes every row: a new row may then get a rowid an old one had.
    expect(index.deleteBefore(new Date(T0 + 10).toISOString())).toBe(2);
    index.writeBatch([c]);
    index.writeBatch([c, a]);
    expect((await index.search({ q: 'walrus' })).events).toEqual([c, a]);
    expect((await index.search({ q: 'b' })).events).toEqual([]);
  });

  it('uses an index for every filter (no full table scan)', () => {
    const cursor = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'x'])).toString('base64url');
    const queries: AuditQuery[] = [
      {},
      { from: '2026-01-01', to: '2026-01-02' },
      { types: ['user.logout'] },
      { types: ['user.logout', 'user.login'], from: '2026-01-01' },
      { user: 'alice' },
      { user: 'alice', from: '2026-01-01', cursor },
      { q: 'hello' },
      { q: 'hello', user: 'alice', types: ['user.logout'] },
      { session_id: 's-1', types: ['session.command'] },
      { cursor },
    ];
    for (const q of queries) {
      const plan = index.plan(q);
      const scans = plan.filter((d) => /^SCAN e\b/.test(d) && !/USING (COVERING )?INDEX/.test(d));
      expect({ q, scans }).toEqual({ q, scans: [] });
      if (q.q) expect(plan.some((d) => d.includes('VIRTUAL TABLE INDEX'))).toBe(true);
    }
  });
});

describe('SqliteAuditIndex on a worker thread', () => {
  it('writes off the event loop: search sees each write once it resolves, replays stay single', async () => {
    const idx = new SqliteAuditIndex({ path: join(dir, 'w.db'), worker: true });
    try {
      const gen = createIdGenerator(() => T0);
      const a = make({ type: 'user.logout', user: 'alice', message: 'walrus one' }, T0, gen);
      const b = make({ type: 'user.logout', user: 'bob', message: 'walrus two' }, T0 + 1, gen);
      const pending = idx.writeBatch([a, b], [`${JSON.stringify(a)}\n`, `${JSON.stringify(b)}\n`]);
      expect(pending).toBeInstanceOf(Promise);
      await pending;
      expect((await idx.search({ q: 'walrus' })).events).toEqual([b, a]);
      await idx.write(a);
      await idx.writeBatch([b, a]);
      expect(idx.count()).toBe(2);
      expect((await idx.search({ q: 'walrus', user: 'bob' })).events).toEqual([b]);
    } finally {
      await idx.close();
    }
  });

  it('rejects a batch the database refuses, with its reason, and keeps writing the next ones', async () => {
    const idx = new SqliteAuditIndex({ path: join(dir, 'w.db'), worker: true });
    try {
      const good = make({ type: 'gateway.stop' }, T0);
      // A user that is not a string cannot be bound to its column; the whole batch fails with it.
      const broken = {
        ...make({ type: 'gateway.stop' }, T0 + 1),
        user: { name: 'x' },
      } as unknown as AuditEvent;
      await expect(idx.writeBatch([good, broken])).rejects.toThrow(/^audit index: .*bind/);
      expect(idx.count()).toBe(0);
      await idx.writeBatch([good]);
      expect(idx.count()).toBe(1);
    } finally {
      await idx.close();
    }
  });

  it('rejects what was in flight when its thread dies, and starts a new thread on the next write', async () => {
    const file = join(dir, 'w.db');
    const idx = new SqliteAuditIndex({ path: file, worker: true });
    try {
      // The thread starts on the first write and opens the file by name: make the name a directory.
      await rename(file, `${file}.moved`);
      await mkdir(file);
      await expect(idx.write(make({ type: 'gateway.stop' }, T0))).rejects.toThrow(
        /audit index writer stopped/,
      );
      await rmdir(file);
      await rename(`${file}.moved`, file);
      const e = make({ type: 'user.logout', user: 'alice', message: 'after the restart' }, T0 + 1);
      await idx.write(e);
      expect((await idx.search({ q: 'restart' })).events).toEqual([e]);
    } finally {
      await idx.close();
    }
  });

  it('closes its thread: close resolves only after the last write committed', async () => {
    const idx = new SqliteAuditIndex({ path: join(dir, 'w.db'), worker: true });
    const writes = Array.from({ length: 50 }, (_, i) => idx.write(make({ type: 'gateway.stop' }, T0 + i)));
    await Promise.all(writes);
    await idx.close();
    const check = new SqliteAuditIndex({ path: join(dir, 'w.db') });
    try {
      expect(check.count()).toBe(50);
    } finally {
      await check.close();
    }
  });
});
