import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
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
CREATE VIRTUAL TABLE IF NOT EXISTS events_fts USING fts5(
  json, content='events', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
);
-- Rows reach the FTS table from write() itself, not from an insert trigger:
-- FTS5 flushes its pending terms at every statement savepoint a trigger
-- opens, which made each event cost a segment write and merge (about 3x
-- the cost of the whole insert). Indexes made with the trigger lose it here.
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
  readonly #insert: Database.Statement;
  readonly #insertText: Database.Statement;
  readonly #insertOne: (e: AuditEvent) => void;
  readonly #insertMany: (events: AuditEvent[], lines?: readonly string[]) => void;
  #closed = false;

  constructor(opts: SqliteAuditIndexOptions) {
    this.name = opts.name ?? 'index';
    if (opts.path !== ':memory:') {
      mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      // Create the file ourselves so it is 0600; SQLite gives -wal/-shm the same mode.
      closeSync(openSync(opts.path, 'a', 0o600));
    }
    this.#db = new Database(opts.path);
    // busy_timeout first: switching to WAL and creating the schema take locks
    // another process may hold at the same moment.
    this.#db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.transaction(() => this.#db.exec(SCHEMA)).immediate();
    this.#insert = this.#db.prepare(
      'INSERT OR IGNORE INTO events (id, time, type, code, user, session_id, json) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#insertText = this.#db.prepare('INSERT INTO events_fts (rowid, json) VALUES (?, ?)');
    const insertOne = (e: AuditEvent, line?: string) => {
      const json = line === undefined ? JSON.stringify(e) : line.trimEnd();
      const r = this.#insert.run(e.id, e.time, e.type, e.code, e.user ?? null, e.session_id ?? null, json);
      // A replayed event already indexed (OR IGNORE) must not get a second FTS row.
      if (r.changes === 1) this.#insertText.run(r.lastInsertRowid, json);
    };
    this.#insertOne = this.#db.transaction(insertOne);
    this.#insertMany = this.#db.transaction((events: AuditEvent[], lines?: readonly string[]) => {
      for (let i = 0; i < events.length; i++) insertOne(events[i]!, lines?.[i]);
    });
  }

  write(e: AuditEvent): void {
    this.#insertOne(e);
  }

  /** Group commit: one transaction (one WAL commit) for the whole batch; `lines` as the log serialized them. */
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void {
    this.#insertMany(events, lines);
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

  count(): number {
    return (this.#db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
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
