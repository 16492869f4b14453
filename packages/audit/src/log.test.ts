import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditUnavailableError } from './errors.js';
import type { AuditEvent } from './events.js';
import { SqliteAuditIndex } from './index-sqlite.js';
import { AUDIT_DIAGNOSTICS_CHANNEL, type AuditDiagnostic, AuditLog, type AuditLogOptions } from './log.js';
import { JsonlFileSink } from './sinks/jsonl.js';
import type { AuditSink } from './sinks/types.js';
import { FailingSink, MemorySink } from './testing/index.js';

let dir: string;
const logs: AuditLog[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-audit-log-'));
});
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  await rm(dir, { recursive: true, force: true });
});

function open(opts: Partial<AuditLogOptions> & Pick<AuditLogOptions, 'sinks'>): AuditLog {
  const log = new AuditLog({ cluster: 'acme', spoolDir: join(dir, 'spool'), ...opts });
  logs.push(log);
  return log;
}

const ids = (es: AuditEvent[]) => es.map((e) => e.id);
const types = (es: AuditEvent[]) => es.map((e) => e.type);

/** Accepts `budget` writes, then fails until given more. */
class BudgetSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  constructor(
    readonly name: string,
    public budget: number,
  ) {}
  write(e: AuditEvent): void {
    if (this.budget <= 0) throw new Error('out of budget');
    this.budget--;
    this.events.push(e);
  }
}

describe('AuditLog.emit', () => {
  it('fills id, time, code and cluster and writes the same event to every sink', async () => {
    const a = new MemorySink('a');
    const b = new MemorySink('b');
    const log = open({ sinks: [a, b], clock: () => new Date(Date.UTC(2026, 4, 6, 7, 8, 9, 10)) });
    const e = await log.emit({
      type: 'user.login',
      success: false,
      method: 'password',
      reason: 'bad_password',
      error: 'wrong password',
      user: 'alice',
      // An emitter cannot choose the fields the log owns.
      ...({ id: 'forged', time: '1999-01-01T00:00:00.000Z', cluster: 'evil', code: 'GH0000I' } as object),
    });
    expect(e).toMatchObject({
      time: '2026-05-06T07:08:09.010Z',
      code: 'GH1001W',
      cluster: 'acme',
      user: 'alice',
    });
    expect(e.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Object.keys(e).slice(0, 5)).toEqual(['id', 'time', 'type', 'code', 'cluster']);
    expect(a.events).toEqual([e]);
    expect(b.events).toEqual([e]);
  });

  it('gives later events larger ids (time-ordered)', async () => {
    const sink = new MemorySink();
    const log = open({ sinks: [sink] });
    for (let i = 0; i < 50; i++) await log.emit({ type: 'gateway.stop' });
    expect(ids(sink.events)).toEqual([...ids(sink.events)].sort());
  });

  it('uses an injected id generator', async () => {
    let n = 0;
    const log = open({ sinks: [new MemorySink()], idGen: () => `id-${++n}` });
    expect((await log.emit({ type: 'gateway.stop' })).id).toBe('id-1');
  });

  it('rejects an unknown type and writes nothing', async () => {
    const sink = new MemorySink();
    const log = open({ sinks: [sink] });
    await expect(log.emit({ type: 'user.hacked' } as never)).rejects.toMatchObject({
      code: 'GH_ERR_VALIDATION',
      message: expect.stringContaining('user.hacked'),
    });
    expect(sink.events).toEqual([]);
  });

  it('refuses duplicate sink names and a log without sinks', () => {
    expect(() => open({ sinks: [new MemorySink('x'), new MemorySink('x')] })).toThrow(
      /two sinks are named 'x'/,
    );
    expect(() => open({ sinks: [] })).toThrow(/at least one sink/);
    expect(() => open({ sinks: [new MemorySink('../etc')] })).toThrow(/sink name/);
  });
});

describe('AuditLog with a failing sink', () => {
  it('spools to disk, reports the backlog, and delivers everything in order once the sink recovers', async () => {
    const healthy = new MemorySink('healthy');
    const remote = new FailingSink({ name: 'remote', error: 'connection refused' });
    const diag: AuditDiagnostic[] = [];
    const onDiag = (m: unknown) => diag.push(m as AuditDiagnostic);
    subscribe(AUDIT_DIAGNOSTICS_CHANNEL, onDiag);
    try {
      // A long first delay: this test drives the retries itself.
      const log = open({ sinks: [healthy, remote], retryInitialMs: 60_000 });
      const emitted: AuditEvent[] = [];
      for (let i = 0; i < 3; i++) emitted.push(await log.emit({ type: 'user.logout', user: `u${i}` }));

      expect(types(healthy.events)).toEqual(['user.logout', 'audit.backlog', 'user.logout', 'user.logout']);
      const backlogEvent = healthy.events[1];
      expect(backlogEvent).toMatchObject({
        type: 'audit.backlog',
        code: 'GH1210E',
        sink: 'remote',
        backlog: 1,
        error: 'connection refused',
        user: 'system',
      });
      expect(log.backlog()).toEqual({ healthy: 0, remote: 4 });
      expect(remote.events).toEqual([]);
      // Only the first event was tried; later ones queue behind the backlog.
      expect(remote.attempts).toBe(1);
      const spoolFile = join(dir, 'spool', 'remote.spool.jsonl');
      expect((await stat(spoolFile)).mode & 0o777).toBe(0o600);
      expect(
        ids(
          (await readFile(spoolFile, 'utf8'))
            .trimEnd()
            .split('\n')
            .map((l) => JSON.parse(l)),
        ),
      ).toEqual(ids(healthy.events));

      await log.retryNow(); // still down
      expect(log.backlog().remote).toBe(4);

      remote.recover();
      await log.retryNow();
      expect(ids(remote.events)).toEqual(ids(healthy.events));
      expect(new Set(ids(remote.events)).size).toBe(4);
      expect(log.backlog()).toEqual({ healthy: 0, remote: 0 });
      expect(await readdir(join(dir, 'spool'))).toEqual([]);

      // Healthy again: the next event goes straight to the sink.
      const next = await log.emit({ type: 'gateway.stop' });
      expect(remote.events.at(-1)).toEqual(next);
      expect(ids(remote.events)).toEqual(ids(healthy.events));
      expect(ids(emitted).every((id) => ids(remote.events).includes(id))).toBe(true);

      expect(diag.map((d) => d.kind)).toEqual(['sink_failed', 'replay_failed', 'sink_recovered']);
    } finally {
      unsubscribe(AUDIT_DIAGNOSTICS_CHANNEL, onDiag);
    }
  });

  it('retries on its own timer until the sink comes back', async () => {
    const remote = new FailingSink({ name: 'remote' });
    const log = open({ sinks: [remote], retryInitialMs: 1, retryMaxMs: 4 });
    await log.emit({ type: 'gateway.start', version: '1', listen: [] });
    await vi.waitFor(() => expect(remote.attempts).toBeGreaterThanOrEqual(4));
    expect(log.backlog().remote).toBe(2);
    remote.recover();
    await vi.waitFor(() => expect(log.backlog().remote).toBe(0));
    expect(types(remote.events)).toEqual(['gateway.start', 'audit.backlog']);
  });

  it('stops retrying once closed', async () => {
    const remote = new FailingSink({ name: 'remote' });
    const log = new AuditLog({
      cluster: 'acme',
      sinks: [remote],
      spoolDir: join(dir, 'spool'),
      retryInitialMs: 1,
    });
    await log.emit({ type: 'gateway.stop' });
    await log.close();
    const attempts = remote.attempts;
    await new Promise((r) => setTimeout(r, 30));
    expect(remote.attempts).toBe(attempts);
    expect(remote.closed).toBe(true);
    await expect(log.emit({ type: 'gateway.stop' })).rejects.toBeInstanceOf(AuditUnavailableError);
  });

  it('replays the spool after a restart (new AuditLog on the same spool dir)', async () => {
    const before = new FailingSink({ name: 'remote' });
    const log1 = new AuditLog({ cluster: 'acme', sinks: [before], spoolDir: join(dir, 'spool') });
    const emitted: AuditEvent[] = [];
    for (let i = 0; i < 3; i++) emitted.push(await log1.emit({ type: 'user.logout', user: `u${i}` }));
    await log1.close();
    expect(before.events).toEqual([]);

    const after = new MemorySink('remote');
    const log2 = open({ sinks: [after] });
    expect(log2.backlog()).toEqual({ remote: 4 });
    // No retryNow: construction schedules the replay.
    await vi.waitFor(() => expect(log2.backlog()).toEqual({ remote: 0 }));
    expect(ids(after.events.filter((e) => e.type === 'user.logout'))).toEqual(ids(emitted));
    expect(types(after.events)).toEqual(['user.logout', 'audit.backlog', 'user.logout', 'user.logout']);
  });

  it('resumes a half-finished replay where it stopped, without duplicates', async () => {
    const sink = new BudgetSink('remote', 0);
    const log1 = new AuditLog({
      cluster: 'acme',
      sinks: [sink],
      spoolDir: join(dir, 'spool'),
      retryInitialMs: 60_000,
    });
    for (let i = 0; i < 5; i++) await log1.emit({ type: 'user.logout', user: `u${i}` });
    const spooled = (await readFile(join(dir, 'spool', 'remote.spool.jsonl'), 'utf8'))
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEvent);
    expect(spooled).toHaveLength(6);
    sink.budget = 2;
    await log1.retryNow();
    expect(log1.backlog().remote).toBe(4);
    await log1.close();

    const sink2 = new MemorySink('remote');
    const log2 = open({ sinks: [sink2] });
    expect(log2.backlog().remote).toBe(4);
    await log2.retryNow();
    expect(ids([...sink.events, ...sink2.events])).toEqual(ids(spooled));
  });

  it('keeps a torn spool line aside and still replays the rest', async () => {
    const good = {
      id: 'g1',
      time: '2026-01-01T00:00:00.000Z',
      type: 'gateway.stop',
      code: 'GH1201I',
      cluster: 'acme',
    };
    await mkdir(join(dir, 'spool'));
    await writeFile(join(dir, 'spool', 'remote.spool.jsonl'), `${JSON.stringify(good)}\n{"id":"tor`);
    const sink = new MemorySink('remote');
    const log = open({ sinks: [sink], retryInitialMs: 60_000 });
    expect(log.backlog().remote).toBe(2);
    await log.retryNow();
    expect(sink.events).toEqual([good]);
    expect(await readFile(join(dir, 'spool', 'remote.rejected.jsonl'), 'utf8')).toBe('{"id":"tor\n');
    expect(log.backlog().remote).toBe(0);
  });

  it('rejects with GH_ERR_AUDIT_UNAVAILABLE when the sink fails and the spool cannot be written', async () => {
    // As root chmod does not stop writes; a regular file where the directory should be does.
    const spoolPath = join(dir, 'not-a-dir');
    await writeFile(spoolPath, 'x');
    const healthy = new MemorySink('healthy');
    const log = open({ sinks: [healthy, new FailingSink({ name: 'remote' })], spoolDir: spoolPath });
    const err = await log.emit({ type: 'gateway.stop' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AuditUnavailableError);
    expect(err).toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE', status: 503 });
    expect((err as Error).message).toContain("audit sink 'remote' failed (sink unavailable)");
    expect((err as AuditUnavailableError).hint).toMatch(/spool/);
  });

  it('does not need the spool while every sink works', async () => {
    const spoolPath = join(dir, 'not-a-dir');
    await writeFile(spoolPath, 'x');
    const sink = new MemorySink();
    const log = open({ sinks: [sink], spoolDir: spoolPath });
    await log.emit({ type: 'gateway.stop' });
    expect(sink.events).toHaveLength(1);
  });
});

describe('AuditLog with files and the SQLite index', () => {
  it('two logs on one directory (two processes) both land in the files and the index', async () => {
    const mk = (who: string) =>
      open({
        sinks: [new JsonlFileSink({ dir: join(dir, 'audit') })],
        index: new SqliteAuditIndex({ path: join(dir, 'audit', 'index.db') }),
        spoolDir: join(dir, `spool-${who}`),
      });
    const daemon = mk('daemon');
    const cli = mk('cli');
    const emitted: AuditEvent[] = [];
    for (let i = 0; i < 30; i++) {
      emitted.push(
        await (i % 3 === 0 ? cli : daemon).emit({ type: 'user.logout', user: i % 3 === 0 ? 'cli' : 'd' }),
      );
    }
    for (const log of [daemon, cli]) {
      const found: AuditEvent[] = [];
      for await (const e of log.iterate({ limit: 7 })) found.push(e);
      expect(new Set(ids(found))).toEqual(new Set(ids(emitted)));
      expect(found).toHaveLength(30);
    }
    expect((await daemon.search({ user: 'cli' })).events).toHaveLength(10);
    expect(daemon.backlog()).toEqual({ jsonl: 0, index: 0 });

    const files = (await readdir(join(dir, 'audit'))).filter((f) => f.endsWith('.jsonl'));
    const lines: AuditEvent[] = [];
    for (const f of files) {
      lines.push(
        ...(await readFile(join(dir, 'audit', f), 'utf8'))
          .trimEnd()
          .split('\n')
          .map((l) => JSON.parse(l) as AuditEvent),
      );
    }
    expect(ids(lines)).toEqual(ids(emitted));
  });

  it('searches through the index and rejects bad input clearly', async () => {
    const index = new SqliteAuditIndex({ path: join(dir, 'index.db') });
    const log = open({ sinks: [], index });
    await log.emit({ type: 'user.login', success: true, method: 'password', mfa: true, user: 'alice' });
    await log.emit({ type: 'role.create', name: 'dev', user: 'bob', message: 'created "dev" (NEAR prod*)' });
    expect((await log.search({ q: '"dev" (NEAR prod*)' })).events.map((e) => e.user)).toEqual(['bob']);
    expect((await log.search({ types: ['user.login'] })).events.map((e) => e.user)).toEqual(['alice']);
    await expect(log.search({ cursor: '%%%' })).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
    await expect(log.search({ to: '2026-13-01' })).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });

  it('closes sinks and index on close', async () => {
    const sink = new MemorySink();
    const index = new SqliteAuditIndex({ path: join(dir, 'index.db') });
    const log = new AuditLog({ cluster: 'acme', sinks: [sink], index, spoolDir: join(dir, 'spool') });
    await log.emit({ type: 'gateway.stop' });
    await log.close();
    expect(sink.closed).toBe(true);
    expect(() => index.count()).toThrow(/not open/);
  });

  it('search without an index says what is missing', async () => {
    const log = open({ sinks: [new MemorySink()] });
    await expect(log.search({})).rejects.toMatchObject({ code: 'GH_ERR_AUDIT_UNAVAILABLE' });
  });
});
