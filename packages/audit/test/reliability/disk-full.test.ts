import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AUDIT_DIAGNOSTICS_CHANNEL,
  type AuditDiagnostic,
  type AuditEvent,
  AuditLog,
  AuditUnavailableError,
  JsonlFileSink,
  SqliteAuditIndex,
} from '../../src/index.js';
import { SmallDisk } from './small-disk.js';

/** Every line of every event file; a line that is not JSON fails the test (it would be a corrupt record). */
function linesOnDisk(dir: string): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.jsonl'))
    .sort()) {
    const text = readFileSync(join(dir, f), 'utf8');
    expect(text.endsWith('\n'), `${f} ends in a newline`).toBe(true);
    for (const line of text.trimEnd().split('\n')) out.push(JSON.parse(line) as AuditEvent);
  }
  return out;
}

describe('reliability: the audit log on a full disk', () => {
  let disk: SmallDisk;
  let log: AuditLog;
  const diag: AuditDiagnostic[] = [];
  const onDiag = (d: unknown) => diag.push(d as AuditDiagnostic);

  beforeEach(() => {
    // Room enough that the index's own catch-up (its WAL) cannot fill the disk again once it is freed.
    disk = new SmallDisk(8 * 1024 * 1024);
    diag.length = 0;
    subscribe(AUDIT_DIAGNOSTICS_CHANNEL, onDiag);
    const index = new SqliteAuditIndex({ path: join(disk.dir, 'audit', 'index.db') });
    log = new AuditLog({
      cluster: 'acme',
      sinks: [new JsonlFileSink({ dir: join(disk.dir, 'audit') }), index],
      index,
      background: ['index'],
      spoolDir: join(disk.dir, 'audit', 'spool'),
      retryInitialMs: 50,
      retryMaxMs: 200,
    });
  });

  afterEach(async () => {
    unsubscribe(AUDIT_DIAGNOSTICS_CHANNEL, onDiag);
    await log.close().catch(() => undefined);
    disk.unmount();
  });

  it('refuses new work, keeps what happened in memory, and writes it whole once space returns', async () => {
    const written: string[] = [];
    for (let i = 0; i < 20; i++)
      written.push((await log.emit({ type: 'user.logout', user: `before${i}` })).id);
    disk.fill();

    // A large event cannot fit: its write is cut short, then taken back.
    const big = 'x'.repeat(64 * 1024);
    const outcomes: { user: string; ok: boolean; precondition: boolean }[] = [];
    for (let i = 0; i < 30; i++) {
      const precondition = i % 3 === 0;
      const user = `${precondition ? 'start' : 'end'}${i}`;
      const ok = await log
        .emit({ type: 'user.logout', user, message: i === 1 ? big : `event ${i}` }, { precondition })
        .then(
          (e) => {
            written.push(e.id);
            return true;
          },
          (err: unknown) => {
            expect(err).toBeInstanceOf(AuditUnavailableError);
            return false;
          },
        );
      outcomes.push({ user, ok, precondition });
    }
    // The disk is full: nothing after the first failure is durable, so new work is refused.
    expect(outcomes.filter((o) => !o.ok).length).toBeGreaterThan(20);
    expect(log.available()).toBe(false);
    expect(() => log.assertAvailable()).toThrow(/new sessions and actions are refused/);
    // What already happened is recorded later, and record() never rejects.
    await log.record({
      type: 'session.leave',
      user: 'carol',
      session_id: 's1',
      session_kind: 'ssh',
      owner: 'alice',
      server: 'n1',
      mode: 'observer',
      duration_ms: 5,
    });
    expect(diag.some((d) => d.kind === 'retained')).toBe(true);

    disk.free();
    await expect.poll(() => log.available(), { timeout: 10_000 }).toBe(true);
    await log.close();

    const onDisk = linesOnDisk(join(disk.dir, 'audit'));
    const users = onDisk.filter((e) => e.type === 'user.logout').map((e) => e.user);
    // Every event that is not a refused precondition is there, once, in emit order.
    const expected = [
      ...Array.from({ length: 20 }, (_, i) => `before${i}`),
      ...outcomes.filter((o) => o.ok || !o.precondition).map((o) => o.user),
    ];
    expect(users).toEqual(expected);
    expect(onDisk.some((e) => e.type === 'session.leave')).toBe(true);
    expect(new Set(onDisk.map((e) => e.id)).size).toBe(onDisk.length);
    // The failure itself is on record.
    expect(onDisk.some((e) => e.type === 'audit.backlog')).toBe(true);
    // Durable ones are all there (the promise resolved, so they must be).
    const ids = new Set(onDisk.map((e) => e.id));
    for (const id of written) expect(ids.has(id)).toBe(true);
  });

  it('past the memory bound, counts what it could not keep and records the count on recovery', async () => {
    await log.close();
    const small = new AuditLog({
      cluster: 'acme',
      sinks: [new JsonlFileSink({ dir: join(disk.dir, 'audit2') })],
      spoolDir: join(disk.dir, 'audit2', 'spool'),
      retryInitialMs: 50,
      memoryRetainMaxBytes: 2_000,
    });
    await small.emit({ type: 'gateway.start', version: '1', listen: [] });
    disk.fill();
    for (let i = 0; i < 40; i++) await small.record({ type: 'user.logout', user: `u${i}` });
    expect(diag.some((d) => d.kind === 'dropped')).toBe(true);
    disk.free();
    await expect.poll(() => small.available(), { timeout: 10_000 }).toBe(true);
    await small.close();
    const onDisk = linesOnDisk(join(disk.dir, 'audit2'));
    const kept = onDisk.filter((e) => e.type === 'user.logout').length;
    const dropped = onDisk.find((e) => e.type === 'audit.dropped') as
      | Extract<AuditEvent, { type: 'audit.dropped' }>
      | undefined;
    expect(kept).toBeGreaterThan(0);
    expect(dropped?.lost).toBe(40 - kept);
  });
});
