import { closeSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { AuditEvent } from './events.js';
import {
  type AuditQuery,
  type AuditSearchResult,
  encodeCursor,
  type NormalizedQuery,
  normalizeQuery,
} from './query.js';
import type { AuditIndex } from './sinks/types.js';

export interface SqliteAuditIndexOptions {
  /** Database file; created mode 0600 (with its directory, 0700) if missing. */
  path: string;
  /** Sink name, default 'index'. */
  name?: string;
  /** How long a writer waits for another process's write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /**
   * Insert from a worker thread with its own connection, so indexing (the
   * FTS5 tokenizing above all) stays off the caller's event loop: the daemon,
   * where every audited query would otherwise wait behind it. Writes then
   * resolve once the worker committed them. Default false (inline, synchronous).
   */
  worker?: boolean;
}

/** One event as the columns of the events table: id, time, type, code, user, session_id, json. */
type Row = [string, string, string, string, string | null, string | null, string];

function rowOf(e: AuditEvent, line?: string): Row {
  // The log hands over the event's JSON line; the JSON text never ends in whitespace.
  const json = line === undefined ? JSON.stringify(e) : line.trimEnd();
  return [e.id, e.time, e.type, e.code, e.user ?? null, e.session_id ?? null, json];
}

/**
 * Inserts rows in one transaction, then feeds FTS5 the new rows in one
 * statement (rows with a rowid above the largest before the batch: SQLite
 * gives a new row max(rowid)+1, and a replayed event already indexed is
 * skipped by OR IGNORE, so it gets no second FTS row). FTS rows are inserted
 * here rather than by an insert trigger: FTS5 flushes its pending terms at
 * every statement savepoint a trigger opens, which made each event cost a
 * segment write and merge (about 3x the cost of the whole insert).
 * Self-contained (no outer names) because a worker thread runs it from its
 * source text.
 */
function createInserter(db: Database.Database): (rows: Row[]) => void {
  const insert = db.prepare(
    'INSERT OR IGNORE INTO events (id, time, type, code, user, session_id, json) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const last = db.prepare('SELECT coalesce(max(seq), 0) FROM events').pluck();
  const text = db.prepare('INSERT INTO events_fts (rowid, json) SELECT seq, json FROM events WHERE seq > ?');
  const tx = db.transaction((rows: Row[]) => {
    const before = last.get();
    for (const r of rows) insert.run(r);
    text.run(before);
  });
  // IMMEDIATE: the batch reads max(seq) first, and a read that later turns
  // into a write fails (SQLITE_BUSY) if another process wrote in between.
  return (rows) => tx.immediate(rows);
}

interface WriterData {
  driver: string;
  path: string;
  busyTimeoutMs: number;
}

/** The worker thread's program (run from its source text, so self-contained too). */
function writerMain(
  require: NodeJS.Require,
  wt: typeof import('node:worker_threads'),
  inserter: typeof createInserter,
): void {
  const data = wt.workerData as WriterData;
  const port = wt.parentPort;
  if (!port) throw new Error('the audit index writer must run in a worker thread');
  const Db = require(data.driver) as typeof Database;
  const db = new Db(data.path);
  db.pragma(`busy_timeout = ${data.busyTimeoutMs}`);
  db.pragma('synchronous = NORMAL');
  const insert = inserter(db);
  port.on('message', (m: { seq: number; rows?: Row[]; close?: true }) => {
    if (m.close) {
      db.close();
      port.close();
      return;
    }
    try {
      insert(m.rows ?? []);
      port.postMessage({ seq: m.seq });
    } catch (err) {
      port.postMessage({ seq: m.seq, error: err instanceof Error ? err.message : String(err) });
    }
  });
}

/**
 * Runs inserts on a worker thread, in order, one message per batch. A batch
 * that fails there rejects (the AuditLog then spools and retries it); a
 * worker that dies rejects everything in flight and is started again on the
 * next write. The thread keeps the process alive only while writes are in
 * flight.
 */
interface WriterThread {
  worker: Worker;
  /** This thread's batches in flight, by sequence number. */
  pending: Map<number, { resolve: () => void; reject: (err: Error) => void }>;
}

class WorkerWriter {
  readonly #data: WriterData;
  #thread: WriterThread | undefined;
  #seq = 0;

  constructor(data: WriterData) {
    this.#data = data;
  }

  write(rows: Row[]): Promise<void> {
    const t = this.#start();
    const seq = ++this.#seq;
    return new Promise<void>((resolve, reject) => {
      t.pending.set(seq, { resolve, reject });
      t.worker.ref();
      t.worker.postMessage({ seq, rows });
    });
  }

  async close(): Promise<void> {
    const t = this.#thread;
    if (!t) return;
    this.#thread = undefined;
    const exited = new Promise<void>((resolve) => t.worker.once('exit', () => resolve()));
    t.worker.ref();
    t.worker.postMessage({ close: true });
    await exited;
  }

  #start(): WriterThread {
    if (this.#thread) return this.#thread;
    const program = `(${writerMain})(require, require('node:worker_threads'), ${createInserter});`;
    const t: WriterThread = {
      worker: new Worker(program, { eval: true, workerData: this.#data }),
      pending: new Map(),
    };
    const w = t.worker;
    w.unref();
    w.on('message', (m: { seq: number; error?: string }) => {
      const p = t.pending.get(m.seq);
      if (!p) return;
      t.pending.delete(m.seq);
      if (m.error === undefined) p.resolve();
      else p.reject(new Error(`audit index: ${m.error}`));
      if (t.pending.size === 0) w.unref();
    });
    // Only this thread's batches fail with it; a thread started since has its own.
    const stopped = (why: string) => {
      if (this.#thread === t) this.#thread = undefined;
      for (const p of t.pending.values()) p.reject(new Error(`audit index writer stopped: ${why}`));
      t.pending.clear();
    };
    w.on('error', (err) => stopped(err.message));
    w.on('exit', (code) => stopped(`exit code ${code}`));
    this.#thread = t;
    return t;
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  -- An explicit INTEGER PRIMARY KEY keeps rowids stable across VACUUM, which
  -- the external-content FTS table relies on. id is the event's identity.
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  time TEXT NOT NULL,
  type TEXT NOT NULL,
  code TEXT NOT NULL,
  user TEXT,
  session_id TEXT,
  json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time_id ON events(time, id);
CREATE INDEX IF NOT EXISTS events_type_time ON events(type, time, id);
CREATE INDEX IF NOT EXISTS events_user_time ON events(user, time, id);
CREATE INDEX IF NOT EXISTS events_session_time ON events(session_id, time, id);
-- columnsize=0: no per-row size record (only bm25 ranking would read it;
-- search orders by time). An index made before keeps its table as it is.
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
  json, content='events', content_rowid='seq', columnsize=0, tokenize='unicode61 remove_diacritics 2'
);
-- Merge segments in larger steps than the defaults (4 and 16): fewer merges
-- per event written, at the price of a few more segments for a search to
-- read (decision 0015). Stored in the table, so existing indexes get it too.
INSERT INTO events_fts(events_fts, rank) VALUES ('automerge', 16);
INSERT INTO events_fts(events_fts, rank) VALUES ('crisismerge', 64);
-- FTS rows are inserted with their events (createInserter), not by a
-- trigger; indexes made by earlier versions lose their insert trigger here.
DROP TRIGGER IF EXISTS events_fts_insert;
CREATE TRIGGER IF NOT EXISTS events_fts_delete AFTER DELETE ON events BEGIN
  INSERT INTO events_fts(events_fts, rowid, json) VALUES ('delete', old.seq, old.json);
END;
`;

/** Quotes one user word as an FTS5 string, so its characters are data, never query syntax. */
export function ftsPhrase(term: string): string {
  return `"${term.replaceAll('"', '""')}"`;
}

/**
 * The query side of the audit log: SQLite (WAL, so the daemon and a CLI can
 * both write) with b-tree indexes for the time/type/user filters and an FTS5
 * table over the event JSON for free text. Also a sink: `write` is
 * idempotent on the event id, so spool replays never duplicate rows.
 */
export class SqliteAuditIndex implements AuditIndex {
  readonly name: string;
  readonly #db: Database.Database;
  readonly #insert: (rows: Row[]) => void;
  readonly #worker: WorkerWriter | undefined;
  #closed = false;

  constructor(opts: SqliteAuditIndexOptions) {
    this.name = opts.name ?? 'index';
    if (opts.path !== ':memory:') {
      mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      // Create the file ourselves so it is 0600; SQLite gives -wal/-shm the same mode.
      closeSync(openSync(opts.path, 'a', 0o600));
    }
    const busyTimeoutMs = Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000));
    this.#db = new Database(opts.path);
    // busy_timeout first: switching to WAL and creating the schema take locks
    // another process may hold at the same moment.
    this.#db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.transaction(() => this.#db.exec(SCHEMA)).immediate();
    this.#insert = createInserter(this.#db);
    if (opts.worker) {
      if (opts.path === ':memory:') throw new TypeError('SqliteAuditIndex: a worker needs a database file');
      this.#worker = new WorkerWriter({
        driver: createRequire(import.meta.url).resolve('better-sqlite3'),
        path: opts.path,
        busyTimeoutMs,
      });
    }
  }

  write(e: AuditEvent): void | Promise<void> {
    return this.writeBatch([e]);
  }

  /** Group commit: one transaction (one WAL commit) for the whole batch; `lines` as the log serialized them. */
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void | Promise<void> {
    const rows = events.map((e, i) => rowOf(e, lines?.[i]));
    if (this.#worker) return this.#worker.write(rows);
    this.#insert(rows);
  }

  async search(query: AuditQuery): Promise<AuditSearchResult> {
    const q = normalizeQuery(query);
    const { sql, params } = buildSearch(q);
    const rows = this.#db.prepare(sql).all(...params) as { json: string }[];
    const events = rows.slice(0, q.limit).map((r) => JSON.parse(r.json) as AuditEvent);
    const last = events.at(-1);
    return rows.length > q.limit && last ? { events, next_cursor: encodeCursor(last) } : { events };
  }

  /** The SQLite query plan for a search, for checking that every filter uses an index. */
  plan(query: AuditQuery): string[] {
    const { sql, params } = buildSearch(normalizeQuery(query));
    const rows = this.#db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[];
    return rows.map((r) => r.detail);
  }

  /**
   * Removes the events older than `time` (ISO) from the index, for
   * retention (the JSON-lines files they came from are deleted too).
   * Returns how many. Runs on this connection; WAL lets the writer go on.
   */
  deleteBefore(time: string): number {
    return this.#db.prepare('DELETE FROM events WHERE time < ?').run(time).changes;
  }

  count(): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#worker?.close();
    this.#db.close();
  }
}

function buildSearch(q: NormalizedQuery): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  if (q.terms.length > 0) {
    // FTS5 drives: it yields matching rowids, which are primary-key lookups.
    where.push('e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)');
    params.push(q.terms.map(ftsPhrase).join(' AND '));
  }
  if (q.from !== undefined) {
    where.push('e.time >= ?');
    params.push(q.from);
  }
  if (q.to !== undefined) {
    where.push('e.time < ?');
    params.push(q.to);
  }
  if (q.types !== undefined) {
    where.push(`e.type IN (${q.types.map(() => '?').join(', ')})`);
    params.push(...q.types);
  }
  if (q.user !== undefined) {
    where.push('e.user = ?');
    params.push(q.user);
  }
  if (q.session_id !== undefined) {
    where.push('e.session_id = ?');
    params.push(q.session_id);
  }
  if (q.after !== undefined) {
    // Keyset pagination: a row-value comparison the (.., time, id) indexes can seek to.
    where.push('(e.time, e.id) < (?, ?)');
    params.push(q.after.time, q.after.id);
  }
  const sql =
    `SELECT e.json FROM events e${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}` +
    ' ORDER BY e.time DESC, e.id DESC LIMIT ?';
  // One row more than asked tells whether another page exists.
  params.push(q.limit + 1);
  return { sql, params };
}
