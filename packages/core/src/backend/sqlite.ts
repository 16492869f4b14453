import diagnostics_channel from 'node:diagnostics_channel';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { type Clock, systemClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import {
  alreadyExists,
  checkKey,
  checkRange,
  checkValue,
  closedError,
  compareKeys,
  conflict,
  expiryFrom,
  makeItem,
  prefixUpperBound,
  Waiters,
} from './keys.js';
import { UPGRADE_HINT } from './schema.js';
import type { Backend, Item, PutOptions, RangeOptions, WatchEvent, WatchOptions } from './types.js';

export interface SqliteBackendOptions {
  /** Database file; created with mode 0600 when missing. Its directory must exist. */
  path: string;
  clock?: Clock;
  /** How often watchers look for changes made by other processes. Default 250. */
  pollIntervalMs?: number;
  /** How often expired items are swept and the change log trimmed; 0 disables the timer. Default 1000. */
  sweepIntervalMs?: number;
  /** Change-log rows younger than this are kept (so a slow watcher can catch up). Default 10 minutes. */
  changeRetentionMs?: number;
  /** The newest this-many change-log rows are always kept. Default 10000. */
  changeRetentionRows?: number;
}

/** Background sweep failures are published here ({ backend, path, error }) instead of being thrown into a timer. */
export const SQLITE_SWEEP_ERROR_CHANNEL = 'gatehouse:backend:sqlite:sweep-error';

const SCHEMA_VERSION = 1;
const WATCH_BATCH = 1000;

interface ItemRow {
  key: string;
  value: string;
  revision: number;
  expires: number | null;
}

interface ChangeRow {
  revision: number;
  key: string;
  type: 'put' | 'delete';
  value: string | null;
  expires: number | null;
}

type Start = { ok: true; revision: number } | { ok: false; error: unknown };

function wrap(e: unknown, op: string, path: string): GatehouseError {
  if (e instanceof GatehouseError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', `SQLite ${op} failed on ${path}: ${msg}`, {
    hint: `Check that ${path} is on a local disk with free space, readable and writable by this user, and not damaged.`,
    cause: e,
  });
}

function createPrivateFile(path: string): void {
  try {
    fs.closeSync(fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // The store holds sealed secrets and user metadata: tighten a file someone loosened.
    if ((fs.statSync(path).mode & 0o077) !== 0) fs.chmodSync(path, 0o600);
  }
}

function migrate(db: Database.Database): void {
  db.transaction(() => {
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new GatehouseError(
        'GH_ERR_DATA_DIR_NEWER',
        `the database's table layout (version ${version}) is newer than this Gatehouse understands (${SCHEMA_VERSION})`,
        { hint: UPGRADE_HINT },
      );
    }
    db.exec(`
      CREATE TABLE IF NOT EXISTS items (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        revision INTEGER NOT NULL,
        expires INTEGER NULL
      );
      CREATE INDEX IF NOT EXISTS items_expires ON items (expires) WHERE expires IS NOT NULL;
      CREATE TABLE IF NOT EXISTS changes (
        revision INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        type TEXT NOT NULL,
        value TEXT NULL,
        expires INTEGER NULL,
        time INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
    `);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/**
 * The embedded default backend: one SQLite file in the data dir, shared by
 * every Gatehouse process that uses that dir. Revisions come from a counter
 * bumped inside each write transaction, so they are unique and commit in
 * order across processes; watchers read the `changes` log.
 */
export class SqliteBackend implements Backend {
  readonly kind = 'sqlite';
  readonly path: string;
  readonly #db: Database.Database;
  readonly #clock: Clock;
  readonly #pollMs: number;
  readonly #retentionMs: number;
  readonly #retentionRows: number;
  readonly #waiters = new Waiters();
  readonly #sweeper: NodeJS.Timeout | undefined;
  readonly #tx: Database.Transaction<(fn: (now: number) => unknown, now: number) => unknown>;
  readonly #q;
  #closed = false;

  static async open(opts: SqliteBackendOptions): Promise<SqliteBackend> {
    let db: Database.Database | undefined;
    try {
      createPrivateFile(opts.path);
      db = new Database(opts.path, { fileMustExist: true });
      // busy_timeout first: switching to WAL takes a lock another process may hold.
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      migrate(db);
      return new SqliteBackend(db, opts);
    } catch (e) {
      db?.close();
      throw wrap(e, 'open', opts.path);
    }
  }

  private constructor(db: Database.Database, opts: SqliteBackendOptions) {
    this.#db = db;
    this.path = opts.path;
    this.#clock = opts.clock ?? systemClock;
    this.#pollMs = opts.pollIntervalMs ?? 250;
    this.#retentionMs = opts.changeRetentionMs ?? 10 * 60_000;
    this.#retentionRows = opts.changeRetentionRows ?? 10_000;
    this.#tx = db.transaction((fn: (now: number) => unknown, now: number) => fn(now));
    const range = (strict: boolean, bounded: boolean) =>
      db.prepare<Record<string, unknown>, ItemRow>(
        `SELECT key, value, revision, expires FROM items
         WHERE key ${strict ? '>' : '>='} @lo ${bounded ? 'AND key < @hi' : ''}
           AND (expires IS NULL OR expires > @now)
         ORDER BY key LIMIT @limit`,
      );
    const changes = (bounded: boolean) =>
      db.prepare<Record<string, unknown>, ChangeRow>(
        `SELECT revision, key, type, value, expires FROM changes
         WHERE revision > @from AND revision <= @to AND key >= @lo ${bounded ? 'AND key < @hi' : ''}
         ORDER BY revision LIMIT ${WATCH_BATCH}`,
      );
    this.#q = {
      row: db.prepare<[string], ItemRow>('SELECT key, value, revision, expires FROM items WHERE key = ?'),
      live: db.prepare<[string, number], ItemRow>(
        'SELECT key, value, revision, expires FROM items WHERE key = ? AND (expires IS NULL OR expires > ?)',
      ),
      upsert: db.prepare<[string, string, number, number | null]>(
        `INSERT INTO items (key, value, revision, expires) VALUES (?, ?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires`,
      ),
      remove: db.prepare<[string]>('DELETE FROM items WHERE key = ?'),
      nextRevision: db.prepare<[], { value: number }>(
        "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value",
      ),
      meta: db.prepare<[string], { value: number }>('SELECT value FROM meta WHERE name = ?'),
      log: db.prepare<[number, string, string, string | null, number | null, number]>(
        'INSERT INTO changes (revision, key, type, value, expires, time) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      expired: db.prepare<[number], { key: string }>(
        'SELECT key FROM items WHERE expires IS NOT NULL AND expires <= ? ORDER BY key',
      ),
      trimCutoff: db.prepare<[number, number], { r: number | null }>(
        'SELECT max(revision) AS r FROM changes WHERE revision <= ? AND time < ?',
      ),
      trim: db.prepare<[number]>('DELETE FROM changes WHERE revision <= ?'),
      compact: db.prepare<[number]>("UPDATE meta SET value = max(value, ?) WHERE name = 'compacted'"),
      range: [range(false, false), range(true, false), range(false, true), range(true, true)] as const,
      changes: [changes(false), changes(true)] as const,
    };
    const interval = opts.sweepIntervalMs ?? 1000;
    if (interval > 0) {
      this.#sweeper = setInterval(() => this.#background(), interval);
      this.#sweeper.unref();
    }
  }

  async get(key: string): Promise<Item | undefined> {
    checkKey(key);
    const row = this.#guard('get', () => this.#q.live.get(key, this.#now()));
    return row && makeItem(row.key, row.value, row.revision, row.expires);
  }

  async put(key: string, value: string, opts?: PutOptions): Promise<Item> {
    checkKey(key);
    checkValue(value);
    return this.#write('put', (now) => {
      const expires = expiryFrom(now, opts);
      this.#expireIfDue(key, now);
      return this.#store(key, value, expires, now);
    });
  }

  async create(key: string, value: string, opts?: PutOptions): Promise<Item> {
    checkKey(key);
    checkValue(value);
    return this.#write('create', (now) => {
      const expires = expiryFrom(now, opts);
      if (this.#expireIfDue(key, now)) throw alreadyExists(key);
      return this.#store(key, value, expires, now);
    });
  }

  async compareAndSwap(
    key: string,
    expectedRevision: number | null,
    value: string,
    opts?: PutOptions,
  ): Promise<Item> {
    checkKey(key);
    checkValue(value);
    return this.#write('compareAndSwap', (now) => {
      const expires = expiryFrom(now, opts);
      const actual = this.#expireIfDue(key, now)?.revision ?? null;
      if (actual !== expectedRevision) throw conflict(key, expectedRevision, actual);
      return this.#store(key, value, expires, now);
    });
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key);
    return this.#write('delete', (now) => {
      if (!this.#expireIfDue(key, now)) return false;
      this.#remove(key, now);
      return true;
    });
  }

  async range(prefix: string, opts?: RangeOptions): Promise<Item[]> {
    checkRange(opts);
    const hi = prefixUpperBound(prefix);
    const after = opts?.startAfter;
    const strict = after !== undefined && compareKeys(after, prefix) >= 0;
    const lo = strict ? after : prefix;
    if (hi !== undefined && compareKeys(lo, hi) >= 0) return [];
    const stmt = this.#q.range[(strict ? 1 : 0) + (hi === undefined ? 0 : 2)]!;
    const params: Record<string, unknown> = { lo, now: this.#now(), limit: opts?.limit ?? -1 };
    if (hi !== undefined) params['hi'] = hi;
    const rows = this.#guard('range', () => stmt.all(params));
    return rows.map((r) => makeItem(r.key, r.value, r.revision, r.expires));
  }

  watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    // Read the head now, not on first next(): the watch covers changes made after this call.
    let start: Start;
    try {
      start = { ok: true, revision: this.#guard('watch', () => this.#head()) };
    } catch (error) {
      start = { ok: false, error };
    }
    return this.#events(prefix, start, opts.signal);
  }

  async sweepExpired(): Promise<number> {
    return this.#write('sweep', (now) => {
      const keys = this.#q.expired.all(now);
      for (const { key } of keys) this.#remove(key, now);
      return keys.length;
    });
  }

  /**
   * Drop change-log rows that are both older than the retention time and
   * outside the newest retention rows; returns how many were dropped.
   * Watchers that still needed them fail with GH_ERR_CONFLICT.
   */
  async trimChanges(): Promise<number> {
    return this.#write('trim', (now) => {
      const head = this.#head();
      const cutoff = this.#q.trimCutoff.get(head - this.#retentionRows, now - this.#retentionMs)?.r ?? null;
      if (cutoff === null) return 0;
      const n = this.#q.trim.run(cutoff).changes;
      this.#q.compact.run(cutoff);
      return n;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#waiters.wakeAll();
    this.#db.close();
  }

  async *#events(prefix: string, start: Start, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent> {
    if (!start.ok) throw start.error;
    const hi = prefixUpperBound(prefix);
    let cursor = start.revision;
    while (!signal?.aborted && !this.#closed) {
      const batch = this.#guard('watch', () => this.#poll(prefix, hi, cursor));
      cursor = batch.cursor;
      for (const ev of batch.events) {
        if (signal?.aborted || this.#closed) return;
        yield ev;
      }
      if (!batch.more) await this.#waiters.wait(this.#pollMs, signal);
    }
  }

  #poll(prefix: string, hi: string | undefined, cursor: number) {
    // One read transaction, so the head and the rows come from the same snapshot.
    return this.#tx.deferred(() => {
      const compacted = this.#q.meta.get('compacted')?.value ?? 0;
      if (cursor < compacted) {
        throw new GatehouseError(
          'GH_ERR_CONFLICT',
          `watch on "${prefix}" fell behind: changes up to revision ${compacted} were trimmed`,
          {
            hint: 'Re-read the current state with range() and start a new watch.',
            details: { prefix, revision: cursor, compacted },
          },
        );
      }
      const head = this.#head();
      const params: Record<string, unknown> = { from: cursor, to: head, lo: prefix };
      if (hi !== undefined) params['hi'] = hi;
      const rows = this.#q.changes[hi === undefined ? 0 : 1]!.all(params);
      const more = rows.length === WATCH_BATCH;
      const events = rows.map(
        (r): WatchEvent =>
          r.type === 'put'
            ? { type: 'put', item: makeItem(r.key, r.value ?? '', r.revision, r.expires) }
            : { type: 'delete', key: r.key, revision: r.revision },
      );
      return { events, more, cursor: more ? rows[rows.length - 1]!.revision : head };
    }, 0) as { events: WatchEvent[]; more: boolean; cursor: number };
  }

  #background(): void {
    if (this.#closed) return;
    Promise.all([this.sweepExpired(), this.trimChanges()]).catch((error: unknown) => {
      // Expired items are already invisible, so a failed sweep loses nothing; report it and retry next tick.
      diagnostics_channel
        .channel(SQLITE_SWEEP_ERROR_CHANNEL)
        .publish({ backend: this, path: this.path, error });
    });
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  #head(): number {
    return this.#q.meta.get('revision')?.value ?? 0;
  }

  #guard<T>(op: string, fn: () => T): T {
    if (this.#closed) throw closedError(this.kind);
    try {
      return fn();
    } catch (e) {
      throw wrap(e, op, this.path);
    }
  }

  /** Runs `fn` in a write transaction taken up front (BEGIN IMMEDIATE), then wakes local watchers. */
  async #write<T>(op: string, fn: (now: number) => T): Promise<T> {
    const result = this.#guard(op, () => this.#tx.immediate(fn, this.#now()) as T);
    this.#waiters.wakeAll();
    return result;
  }

  #nextRevision(): number {
    const row = this.#q.nextRevision.get();
    if (!row) throw new Error('meta revision row is missing');
    return row.value;
  }

  /** Removes an expired row (logging a delete for watchers) so the write sees the key as missing. */
  #expireIfDue(key: string, now: number): ItemRow | undefined {
    const row = this.#q.row.get(key);
    if (row && row.expires !== null && row.expires <= now) {
      this.#remove(key, now);
      return undefined;
    }
    return row;
  }

  #store(key: string, value: string, expires: number | null, now: number): Item {
    const revision = this.#nextRevision();
    this.#q.upsert.run(key, value, revision, expires);
    this.#q.log.run(revision, key, 'put', value, expires, now);
    return makeItem(key, value, revision, expires);
  }

  #remove(key: string, now: number): void {
    this.#q.remove.run(key);
    this.#q.log.run(this.#nextRevision(), key, 'delete', null, null, now);
  }
}
