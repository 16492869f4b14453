import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditEventInput } from './events.js';
import { SqliteAuditIndex } from './index-sqlite.js';
import { AuditLog } from './log.js';
import { JsonlFileSink } from './sinks/jsonl.js';
import type { AuditSink } from './sinks/types.js';

let dir: string;
const logs: AuditLog[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-audit-batch-'));
});
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  await rm(dir, { recursive: true, force: true });
});

const q = (n: number): AuditEventInput => ({
  type: 'db.session.query',
  session_id: 's1',
  db_service: 'orders',
  db_protocol: 'postgres',
  db_user: 'alice',
  db_name: 'app',
  user: 'alice',
  query: `select ${n}`,
});

/** Records each writeBatch call; fails while `failing` is set. */
class BatchSink implements AuditSink {
  readonly calls: AuditEvent[][] = [];
  failing = false;
  constructor(readonly name: string) {}
  write(e: AuditEvent): void {
    this.writeBatch([e]);
  }
  writeBatch(events: AuditEvent[]): void {
    if (this.failing) throw new Error('disk on fire');
    this.calls.push(events);
  }
}

function open(sinks: AuditSink[], index?: SqliteAuditIndex): AuditLog {
  const log = new AuditLog({
    cluster: 'acme',
    spoolDir: join(dir, 'spool'),
    sinks,
    ...(index ? { index } : {}),
  });
  logs.push(log);
  return log;
}

describe('AuditLog group commit', () => {
  it('writes the events of one tick in one batch, in emit order, and resolves each emit after it', async () => {
    const sink = new BatchSink('batch');
    const log = open([sink]);
    const emitted = await Promise.all(Array.from({ length: 50 }, (_, i) => log.emit(q(i))));
    expect(sink.calls).toHaveLength(1);
    expect(sink.calls[0]!.map((e) => e.id)).toEqual(emitted.map((e) => e.id));
    // A later tick is a new batch.
    await log.emit(q(50));
    expect(sink.calls).toHaveLength(2);
  });

  it('spools a whole failed batch, resolves every emit, and replays it in order', async () => {
    const sink = new BatchSink('batch');
    const log = open([sink]);
    sink.failing = true;
    const emitted = await Promise.all(Array.from({ length: 10 }, (_, i) => log.emit(q(i))));
    expect(sink.calls).toHaveLength(0);
    expect(log.backlog().batch).toBeGreaterThanOrEqual(10);
    sink.failing = false;
    await log.retryNow();
    const delivered = sink.calls.flat().filter((e) => e.type === 'db.session.query');
    expect(delivered.map((e) => e.id)).toEqual(emitted.map((e) => e.id));
    expect(log.backlog().batch).toBe(0);
  });

  it('writes a batch to the JSONL file and the SQLite index, and close() flushes what is pending', async () => {
    const jsonl = new JsonlFileSink({ dir: join(dir, 'events') });
    const index = new SqliteAuditIndex({ path: join(dir, 'index.db') });
    const log = open([jsonl], index);
    const pending = Array.from({ length: 30 }, (_, i) => log.emit(q(i)));
    await log.close();
    const emitted = await Promise.all(pending);
    const [file] = jsonl.files();
    const lines = (await readFile(join(dir, 'events', file!), 'utf8')).trim().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as AuditEvent).id)).toEqual(emitted.map((e) => e.id));
    const again = new SqliteAuditIndex({ path: join(dir, 'index.db') });
    try {
      expect(again.count()).toBe(30);
      // A replay of the same batch (at-least-once) adds nothing.
      again.writeBatch(emitted);
      expect(again.count()).toBe(30);
    } finally {
      await again.close();
    }
  });
});

describe('background sinks', () => {
  it('emit resolves before a background index is written; search still finds the event', async () => {
    const jsonl = new JsonlFileSink({ dir: join(dir, 'events') });
    const index = new SqliteAuditIndex({ path: join(dir, 'index.db') });
    const log = new AuditLog({
      cluster: 'c',
      sinks: [jsonl, index],
      index,
      spoolDir: join(dir, 'spool'),
      background: ['index'],
      backgroundFlushMs: 60_000,
    });
    logs.push(log);
    const e = await log.emit(q(1));
    // The record (JSON lines) is durable when emit resolves; the index is not written yet.
    const files = jsonl.files();
    expect((await readFile(join(dir, 'events', files[0]!), 'utf8')).trim()).toBe(JSON.stringify(e));
    expect(index.count()).toBe(0);
    // Searching waits for the background batch: a process always reads its own writes.
    const page = await log.search({ types: ['db.session.query'] });
    expect(page.events.map((x) => x.id)).toEqual([e.id]);
    expect(index.count()).toBe(1);
  });

  it('batches a background sink and spools its failures without failing emit', async () => {
    const fg = new BatchSink('record');
    const bg = new BatchSink('bg');
    const log = new AuditLog({
      cluster: 'c',
      sinks: [fg, bg],
      spoolDir: join(dir, 'spool'),
      background: ['bg'],
      backgroundFlushMs: 5,
      retryInitialMs: 10,
    });
    logs.push(log);
    bg.failing = true;
    for (let i = 0; i < 5; i++) await log.emit(q(i));
    expect(fg.calls.flat()).toHaveLength(5);
    await new Promise((r) => setTimeout(r, 50));
    // The five queries, plus the audit.backlog event every sink receives when one starts failing.
    expect(log.backlog().bg).toBe(6);
    bg.failing = false;
    await log.retryNow();
    const replayed = bg.calls.flat().filter((e) => e.type === 'db.session.query');
    expect(replayed.map((e) => (e as { query?: string }).query)).toEqual([
      'select 0',
      'select 1',
      'select 2',
      'select 3',
      'select 4',
    ]);
    expect(log.backlog().bg).toBe(0);
  });

  it('makes emitters wait for a background sink that falls too far behind, instead of queueing without bound', async () => {
    const fg = new BatchSink('record');
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow: AuditSink & { writeBatch(events: AuditEvent[]): Promise<void>; written: number } = {
      name: 'slow',
      written: 0,
      write: () => undefined,
      async writeBatch(events: AuditEvent[]) {
        await gate;
        this.written += events.length;
      },
    };
    const log = new AuditLog({
      cluster: 'c',
      sinks: [fg, slow],
      spoolDir: join(dir, 'spool'),
      background: ['slow'],
      backgroundFlushMs: 1,
      backgroundMaxQueued: 3,
    });
    logs.push(log);
    // Three queued events are allowed: their emits resolve with the sink stuck.
    for (let i = 0; i < 3; i++) await log.emit(q(i));
    let fourth = false;
    const p = log.emit(q(3)).then(() => {
      fourth = true;
    });
    await new Promise((r) => setTimeout(r, 30));
    // The fourth is in the record already, but its emit waits for the slow sink.
    expect(fg.calls.flat()).toHaveLength(4);
    expect(fourth).toBe(false);
    release();
    await p;
    expect(slow.written).toBe(4);
    // Caught up: the next emit no longer waits.
    await log.emit(q(4));
  });

  it('writes a background batch once it reaches backgroundBatchMax, without waiting out the window', async () => {
    const fg = new BatchSink('record');
    const bg = new BatchSink('bg');
    const log = new AuditLog({
      cluster: 'c',
      sinks: [fg, bg],
      spoolDir: join(dir, 'spool'),
      background: ['bg'],
      backgroundFlushMs: 60_000,
      backgroundBatchMax: 3,
    });
    logs.push(log);
    await Promise.all([0, 1, 2, 3].map((i) => log.emit(q(i))));
    // The first three went as one batch; the fourth waits for the window (or a search).
    await expect.poll(() => bg.calls.length).toBe(1);
    expect(bg.calls[0]!.map((e) => (e as { query?: string }).query)).toEqual([
      'select 0',
      'select 1',
      'select 2',
    ]);
    expect(fg.calls.flat()).toHaveLength(4);
  });

  it('refuses a configuration with no foreground sink or an unknown background name', () => {
    const a = new BatchSink('a');
    expect(() => new AuditLog({ cluster: 'c', sinks: [a], spoolDir: dir, background: ['a'] })).toThrow(
      /at least one sink/,
    );
    expect(() => new AuditLog({ cluster: 'c', sinks: [a], spoolDir: dir, background: ['nope'] })).toThrow(
      /not one of the sinks/,
    );
  });
});
