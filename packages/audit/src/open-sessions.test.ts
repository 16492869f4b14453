import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from './events.js';
import { OpenSessionJournal } from './open-sessions.js';

const base = { code: 'x', cluster: 'acme', time: '2026-01-01T00:00:00.000Z', user: 'alice' };
const sshStart = (id: string) =>
  ({
    ...base,
    id: `e-${id}`,
    type: 'session.start',
    success: true,
    session_id: id,
    server: 'n1',
    login: 'root',
  }) as AuditEvent;
const sshEnd = (id: string) =>
  ({
    ...base,
    id: `x-${id}`,
    type: 'session.end',
    session_id: id,
    server: 'n1',
    login: 'root',
    duration_ms: 1,
    interactive: false,
    recorded: false,
  }) as AuditEvent;

describe('OpenSessionJournal', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'gh-journal-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('hands the next process the starts this one never ended, as end events of the right type', () => {
    const path = join(dir, 'open.jsonl');
    const j = new OpenSessionJournal(path);
    j.observe(sshStart('a'));
    j.observe(sshStart('b'));
    j.observe({
      ...base,
      id: 'd1',
      type: 'db.session.start',
      success: true,
      session_id: 'c',
      db_service: 'orders',
      db_protocol: 'postgres',
      db_user: 'alice',
      db_name: 'orders',
    } as AuditEvent);
    j.observe(sshEnd('a'));
    // A failed start opened nothing.
    j.observe({ ...sshStart('f'), success: false, error: 'no' } as AuditEvent);
    // As after a kill -9, a torn last line.
    appendFileSync(path, '{"open":{"typ');

    const next = new OpenSessionJournal(path);
    const ends = next.closeEvents(
      { reason: 'gateway_restart', recorded: new Set(['b']) },
      new Date('2026-01-01T00:00:10Z'),
    );
    expect(ends).toEqual([
      expect.objectContaining({
        type: 'session.end',
        session_id: 'b',
        reason: 'gateway_restart',
        interactive: true,
        recorded: true,
        duration_ms: 10_000,
      }),
      expect.objectContaining({ type: 'db.session.end', session_id: 'c', error: 'gateway_restart' }),
    ]);
    expect(ends[1]).not.toHaveProperty('queries');
    next.forget();
    expect(new OpenSessionJournal(path).orphans).toEqual([]);
  });

  it('leaves a journal alone that another live process still writes', () => {
    const path = join(dir, 'open.jsonl');
    // pid 1 (init) is always alive and never this test.
    writeFileSync(path, `${JSON.stringify({ pid: 1 })}\n${JSON.stringify({ open: sshStart('z') })}\n`);
    const j = new OpenSessionJournal(path);
    expect(j.foreignOwner).toBe(1);
    expect(j.orphans).toEqual([]);
    j.observe(sshStart('mine'));
    expect(readFileSync(path, 'utf8')).not.toContain('mine');
  });

  it('stays the size of what is open, not of its history', () => {
    const path = join(dir, 'open.jsonl');
    const j = new OpenSessionJournal(path);
    for (let i = 0; i < 3000; i++) {
      j.observe(sshStart(`s${i}`));
      j.observe(sshEnd(`s${i}`));
    }
    j.observe(sshStart('last'));
    expect(readFileSync(path, 'utf8').trimEnd().split('\n').length).toBeLessThan(1100);
    expect(new OpenSessionJournal(path).orphans.map((s) => s.session_id)).toEqual(['last']);
  });
});
