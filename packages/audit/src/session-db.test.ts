import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DbSessionAudit, REDACTED } from './session-db.js';
import { MemoryAuditLog } from './testing/index.js';

const base = {
  session_id: 's1',
  user: 'alice',
  db_service: 'orders',
  db_protocol: 'postgres',
  db_user: 'reader',
  db_name: 'shop',
};

describe('DbSessionAudit', () => {
  it('emits start, queries and one end with counts and duration', async () => {
    const log = new MemoryAuditLog();
    let t = 1000;
    const s = new DbSessionAudit(log, base, { now: () => t });
    await s.onSessionStart();
    await s.onQuery({ query: 'select 1' });
    await s.onQuery({ query: 'select $1', parameters: ['42'], statement: 'q1', rows: 1 });
    t = 1250;
    await s.onSessionEnd();
    await s.onSessionEnd({ error: 'ignored: already ended' });
    expect(log.events.map((e) => [e.type, e.code])).toEqual([
      ['db.session.start', 'GH2000I'],
      ['db.session.query', 'GH2002I'],
      ['db.session.query', 'GH2002I'],
      ['db.session.end', 'GH2001I'],
    ]);
    expect(log.events[2]).toMatchObject({
      ...base,
      query: 'select $1',
      parameters: ['42'],
      statement: 'q1',
      rows: 1,
    });
    expect(log.events[3]).toMatchObject({ duration_ms: 250, queries: 2 });
    expect(log.events[3]).not.toHaveProperty('error');
  });

  it('without statement audit (db_audit: sessions) marks the start, writes no query, and counts them in the end', async () => {
    const log = new MemoryAuditLog();
    const s = new DbSessionAudit(log, base, { statements: false });
    expect(s.auditsStatements).toBe(false);
    await s.onSessionStart();
    s.countQuery(2);
    // An adapter that calls onQuery anyway gets the count, not a record.
    await s.onQuery({ query: 'select 1' });
    await s.onSessionEnd();
    expect(log.events.map((e) => e.type)).toEqual(['db.session.start', 'db.session.end']);
    expect(log.events[0]).toMatchObject({ ...base, success: true, db_audit: 'sessions' });
    expect(log.events[1]).toMatchObject({ queries: 3 });
    expect(new DbSessionAudit(log, base).auditsStatements).toBe(true);
  });

  it('redacts parameters when the role says so, keeping their count', async () => {
    const log = new MemoryAuditLog();
    const s = new DbSessionAudit(log, base, { redactParameters: true });
    await s.onQuery({ query: 'insert into t values ($1, $2)', parameters: ['secret', 'x'] });
    expect(log.events[0]).toMatchObject({ parameters: [REDACTED, REDACTED] });
  });

  it('a failed start is a warning and ends the session', async () => {
    const log = new MemoryAuditLog();
    const s = new DbSessionAudit(log, base);
    await s.onSessionStartFailed('upstream refused the certificate');
    await s.onSessionEnd();
    expect(log.events.map((e) => e.code)).toEqual(['GH2000W']);
  });

  it('keeps the start, the length and the hash of a statement over the limit', async () => {
    const log = new MemoryAuditLog();
    const s = new DbSessionAudit(log, base, { limits: { maxQueryBytes: 16 } });
    expect(s.limits).toEqual({ maxQueryBytes: 16, maxParameterBytes: 4096 });
    const long = `select '${'y'.repeat(100)}'`;
    await s.onQuery({ query: long });
    await s.onQuery({ query: 'select 2' });
    expect(log.events[0]).toMatchObject({
      query: long.slice(0, 16),
      query_truncated: true,
      query_length: long.length,
      query_sha256: createHash('sha256').update(long).digest('hex'),
    });
    expect(log.events[1]).toMatchObject({ query: 'select 2' });
    expect(log.events[1]).not.toHaveProperty('query_truncated');
    expect(log.events[1]).not.toHaveProperty('query_sha256');
  });

  it('lists clipped parameters with their length and hash, but never for redacted ones', async () => {
    const log = new MemoryAuditLog();
    const clipped = { text: 'abc', length: 10, sha256: 'f'.repeat(64) };
    await new DbSessionAudit(log, base).onQuery({ query: 'q', parameters: ['1', clipped] });
    expect(log.events[0]).toMatchObject({
      parameters: ['1', 'abc'],
      parameters_truncated: [{ index: 1, length: 10, sha256: 'f'.repeat(64) }],
    });
    await new DbSessionAudit(log, base, { redactParameters: true }).onQuery({
      query: 'q',
      parameters: ['1', clipped],
    });
    expect(log.events[1]).toMatchObject({ parameters: [REDACTED, REDACTED] });
    expect(log.events[1]).not.toHaveProperty('parameters_truncated');
  });

  it('records a change of database user; later events name the new user, a refused one changes nothing', async () => {
    const log = new MemoryAuditLog();
    const s = new DbSessionAudit(log, base);
    await s.onChangeUser({ dbUser: 'admin', dbName: 'shop' }, 'access denied: no role allows "admin"');
    await s.onQuery({ query: 'select 1' });
    await s.onChangeUser({ dbUser: 'writer', dbName: 'books' });
    await s.onQuery({ query: 'select 2' });
    await s.onSessionEnd();
    expect(log.events.map((e) => [e.type, e.code, (e as { db_user?: string }).db_user])).toEqual([
      ['db.session.change_user', 'GH2003W', 'admin'],
      ['db.session.query', 'GH2002I', 'reader'],
      ['db.session.change_user', 'GH2003I', 'writer'],
      ['db.session.query', 'GH2002I', 'writer'],
      ['db.session.end', 'GH2001I', 'writer'],
    ]);
    expect(log.events[0]).toMatchObject({
      success: false,
      previous_db_user: 'reader',
      error: 'access denied: no role allows "admin"',
    });
    expect(log.events[2]).toMatchObject({
      success: true,
      db_name: 'books',
      previous_db_user: 'reader',
      previous_db_name: 'shop',
    });
    expect(log.events[3]).toMatchObject({ db_name: 'books' });
  });
});
