import diagnostics_channel from 'node:diagnostics_channel';
import pg from 'pg';
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

export interface PostgresBackendOptions {
  /**
   * How to connect (node-postgres client config: connectionString, password,
   * ssl, ...). Every connection of the backend (the pool and the listener)
   * uses it.
   */
  connection: pg.ClientConfig;
  /** Names the connection settings in error messages (e.g. "backend.uri"). */
  setting?: string;
  clock?: Clock;
  /** Pooled connections for reads and writes. Default 10. */
  poolSize?: number;
  /** How often watchers poll the change log while the LISTEN connection is down. Default 500. */
  pollIntervalMs?: number;
  /** How often watchers poll even while notifications flow (a safety net). Default 10 s. */
  safetyPollMs?: number;
  /** First wait before re-opening a dropped LISTEN connection (doubling up to 5 s). Default 100. */
  reconnectDelayMs?: number;
  /** How often expired items are swept and the change log trimmed; 0 disables the timer. Default 1000. */
  sweepIntervalMs?: number;
  /** Change-log rows younger than this are kept (so a slow or disconnected watcher can catch up). Default 10 minutes. */
  changeRetentionMs?: number;
  /** The newest this-many change-log rows are always kept. Default 10000. */
  changeRetentionRows?: number;
}

/**
 * Background failures (sweeps, the LISTEN connection, watch polls that will
 * be retried) are published here as { backend, op, error } instead of being
 * thrown into a timer.
 */
export const POSTGRES_BACKEND_ERROR_CHANNEL = 'gatehouse:backend:postgres:error';

/** The NOTIFY channel every write announces itself on (payload: "<revision> <key>"). */
export const POSTGRES_NOTIFY_CHANNEL = 'gatehouse_changes';
/** application_name of the LISTEN connection, so operators (and tests) can find it in pg_stat_activity. */
export const POSTGRES_LISTENER_NAME = 'gatehouse-watch';

/** Version of the table layout below; a database with a higher one was written by a newer Gatehouse. */
const LAYOUT_VERSION = 1;
/** pg_advisory_xact_lock key serializing schema creation across gateways ("gatehouse" in ASCII, truncated). */
const SCHEMA_LOCK = 0x6761746568;
const WATCH_BATCH = 1000;
/** NOTIFY payloads are limited to 8000 bytes; a longer key is announced without it (every watcher polls). */
const MAX_NOTIFY_KEY = 4000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gatehouse_meta (name text PRIMARY KEY, value bigint NOT NULL);
INSERT INTO gatehouse_meta (name, value) VALUES ('revision', 0), ('compacted', 0), ('layout', 0)
  ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS gatehouse_items (
  key text COLLATE "C" PRIMARY KEY,
  value bytea NOT NULL,
  revision bigint NOT NULL,
  expires bigint NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_items_expires ON gatehouse_items (expires) WHERE expires IS NOT NULL;
CREATE TABLE IF NOT EXISTS gatehouse_changes (
  revision bigint PRIMARY KEY,
  key text COLLATE "C" NOT NULL,
  type text NOT NULL,
  value bytea NULL,
  expires bigint NULL,
  time bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_changes_time ON gatehouse_changes (time);
`;

/** Error codes of a connection that did not happen or broke: worth retrying, never a config mistake. */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EPIPE',
  'ECONNABORTED',
  'ENOENT', // a Unix socket that is not there (the server is stopped)
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '08000',
  '08001',
  '08003',
  '08006',
  '53300', // too_many_connections
]);

function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isUnreachable(e: unknown): boolean {
  const code = errorCode(e);
  if (code && UNREACHABLE.has(code)) return true;
  const msg = e instanceof Error ? e.message : String(e);
  return /Connection terminated|timeout expired|Query read timeout|Client has encountered a connection error|connection is closed/i.test(
    msg,
  );
}

function unreachable(e: unknown, op: string, where: string, setting: string): GatehouseError {
  const msg = e instanceof Error ? e.message : String(e);
  const code = errorCode(e);
  return new GatehouseError(
    'GH_ERR_BACKEND_UNAVAILABLE',
    `PostgreSQL at ${where} is unreachable (${op}): ${msg}`,
    {
      hint: `Check that PostgreSQL is running and reachable from this machine (${setting}.uri); Gatehouse refuses logins and new sessions until it is back, and resumes by itself.`,
      cause: e,
      details: { retryable: true, ...(code ? { errno: code } : {}) },
    },
  );
}

/** Where the connection goes, for messages: host:port/database, never the password. */
export function describeConnection(c: pg.ClientConfig): string {
  let host = c.host;
  let port = c.port;
  let database = c.database;
  if (c.connectionString) {
    try {
      const u = new URL(c.connectionString);
      host ||= decodeURIComponent(u.hostname) || u.searchParams.get('host') || undefined;
      port ||= u.port ? Number(u.port) : undefined;
      database ||= decodeURIComponent(u.pathname.slice(1)) || undefined;
    } catch {
      // Not a URL: the config check rejects it before a connection is tried; name it generically.
    }
  }
  return `${host ?? 'localhost'}:${port ?? 5432}/${database ?? ''}`;
}

/**
 * Turns a node-postgres error into a GatehouseError that names the setting to
 * fix. Unreachable servers are GH_ERR_BACKEND_UNAVAILABLE with
 * details.retryable, so callers can wait; credentials, a missing database and
 * TLS trouble are GH_ERR_CONFIG_INVALID (retrying will not help).
 */
export function wrapPgError(e: unknown, op: string, where: string, setting = 'backend'): GatehouseError {
  if (e instanceof GatehouseError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = errorCode(e);
  if (code === '28P01' || code === '28000') {
    return new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      `PostgreSQL at ${where} refused the credentials: ${msg}`,
      {
        hint: `Check the user in ${setting}.uri and the password (${setting}.password_file or GATEHOUSE_BACKEND_PASSWORD), or the client certificate in ${setting}.tls.`,
        cause: e,
        details: { setting: `${setting}.uri`, sqlstate: code },
      },
    );
  }
  // A connection refused or cut is an outage even when it happened during the TLS handshake.
  if (code !== undefined && UNREACHABLE.has(code)) return unreachable(e, op, where, setting);
  if (code === '3D000') {
    return new GatehouseError('GH_ERR_CONFIG_INVALID', `PostgreSQL at ${where}: ${msg}`, {
      hint: `Create the database (CREATE DATABASE ... OWNER ...) or fix the database name in ${setting}.uri.`,
      cause: e,
      details: { setting: `${setting}.uri`, sqlstate: code },
    });
  }
  if (
    /certificate|SSL|TLS|self.signed|does not support SSL/i.test(msg) ||
    (code !== undefined &&
      (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT')))
  ) {
    return new GatehouseError('GH_ERR_CONFIG_INVALID', `TLS to PostgreSQL at ${where} failed: ${msg}`, {
      hint: `Check ${setting}.tls (ca_file must hold the CA that signed the server's certificate; server_name the name in it) and sslmode in ${setting}.uri.`,
      cause: e,
      details: { setting: `${setting}.tls` },
    });
  }
  if (isUnreachable(e)) return unreachable(e, op, where, setting);
  return new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', `PostgreSQL ${op} failed on ${where}: ${msg}`, {
    hint: `Check the PostgreSQL server log for ${where}; the user in ${setting}.uri needs CREATE on the schema and read/write on the gatehouse_* tables.`,
    cause: e,
    ...(code ? { details: { code } } : {}),
  });
}

interface ItemRow {
  key: string;
  value: Buffer;
  revision: string;
  expires: string | null;
}

/** The LISTEN connection and the moment it ends. */
interface Listener {
  client: pg.Client;
  ended: Promise<void>;
}

interface Subscriber {
  prefix: string;
  waiters: Waiters;
  /** Set by a wake that came while the watcher was polling (not waiting), so it polls again at once. */
  dirty: boolean;
}

/** What a write step sees: the transaction's client, the time, and revisions taken from the counter. */
interface WriteTx {
  client: pg.PoolClient;
  now: number;
  next(): number;
  /** Keys changed, for the NOTIFY sent at commit. */
  changed: { revision: number; key: string }[];
}

function toItem(r: ItemRow): Item {
  return makeItem(
    r.key,
    r.value.toString('utf8'),
    Number(r.revision),
    r.expires === null ? null : Number(r.expires),
  );
}

function checkPgKey(key: string): void {
  checkKey(key);
  // PostgreSQL text cannot hold NUL: refuse it as bad input rather than as an outage.
  if (key.includes('\u0000')) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'backend keys must not contain NUL characters', {
      hint: 'This is a bug in the caller; report it with the stack trace.',
    });
  }
}

/**
 * The shared backend for several gateways: items in one PostgreSQL table,
 * every write logged in a change table under a revision taken from a counter
 * row that each write transaction locks first. Writers therefore commit one
 * at a time in revision order, which makes the change log a gap-free,
 * ordered feed; watchers read it from their last revision. NOTIFY (sent at
 * commit) only wakes them: a watcher whose LISTEN connection dropped polls
 * until it is back and misses nothing (docs/decisions/0034-postgres-backend.md).
 */
export class PostgresBackend implements Backend {
  readonly kind = 'postgres';
  /** host:port/database, for messages. */
  readonly where: string;
  readonly #setting: string;
  readonly #pool: pg.Pool;
  readonly #connection: pg.ClientConfig;
  readonly #clock: Clock;
  readonly #pollMs: number;
  readonly #safetyMs: number;
  readonly #reconnectMs: number;
  readonly #retentionMs: number;
  readonly #retentionRows: number;
  readonly #subscribers = new Set<Subscriber>();
  readonly #closing = new AbortController();
  readonly #sweeper: NodeJS.Timeout | undefined;
  /** The newest revision this instance knows was committed (its writes, notifications, polls). */
  #head = 0;
  #listener: pg.Client | undefined;
  #listening = false;
  #listenLoop: Promise<void> | undefined;
  #closed = false;

  /**
   * Connects, creates the tables if they are missing (under an advisory
   * lock, so gateways starting together do not trip over each other) and
   * starts listening for changes. Fails with GH_ERR_BACKEND_UNAVAILABLE
   * (details.retryable) when the server cannot be reached, and
   * GH_ERR_CONFIG_INVALID for refused credentials, a missing database or TLS
   * trouble.
   */
  static async open(opts: PostgresBackendOptions): Promise<PostgresBackend> {
    const b = new PostgresBackend(opts);
    try {
      await b.#init();
      return b;
    } catch (e) {
      await b.close();
      throw wrapPgError(e, 'connect', b.where, b.#setting);
    }
  }

  private constructor(opts: PostgresBackendOptions) {
    // A server that stops answering without closing the connection (a network partition) must
    // fail calls within seconds, not hang logins: keepalives, and a client-side limit per query.
    this.#connection = {
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      query_timeout: 15_000,
      ...opts.connection,
    };
    this.#setting = opts.setting ?? 'backend';
    this.where = describeConnection(this.#connection);
    this.#clock = opts.clock ?? systemClock;
    this.#pollMs = opts.pollIntervalMs ?? 500;
    this.#safetyMs = opts.safetyPollMs ?? 10_000;
    this.#reconnectMs = opts.reconnectDelayMs ?? 100;
    this.#retentionMs = opts.changeRetentionMs ?? 10 * 60_000;
    this.#retentionRows = opts.changeRetentionRows ?? 10_000;
    this.#pool = new pg.Pool({
      ...this.#connection,
      application_name: this.#connection.application_name ?? 'gatehouse',
      max: opts.poolSize ?? 10,
    });
    // An idle pooled connection the server drops (restart, pg_terminate_backend) must not crash
    // the process: the pool discards it and the next query opens a fresh one.
    this.#pool.on('error', (error) => this.#report('pool', error));
    const interval = opts.sweepIntervalMs ?? 1000;
    if (interval > 0) {
      this.#sweeper = setInterval(() => this.#background(), interval);
      this.#sweeper.unref();
    }
  }

  async #init(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      // Two gateways starting at once would both run CREATE ... IF NOT EXISTS, which is not safe
      // concurrently (one fails on the catalog's unique index): one at a time.
      await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
      await client.query(SCHEMA);
      const layout = Number(
        (await client.query<{ value: string }>("SELECT value FROM gatehouse_meta WHERE name = 'layout'"))
          .rows[0]?.value ?? 0,
      );
      if (layout > LAYOUT_VERSION) {
        throw new GatehouseError(
          'GH_ERR_DATA_DIR_NEWER',
          `the gatehouse_* tables in PostgreSQL at ${this.where} have layout version ${layout}, newer than this Gatehouse understands (${LAYOUT_VERSION})`,
          { hint: UPGRADE_HINT },
        );
      }
      await client.query("UPDATE gatehouse_meta SET value = $1 WHERE name = 'layout' AND value < $1", [
        LAYOUT_VERSION,
      ]);
      const head = await client.query<{ value: string }>(
        "SELECT value FROM gatehouse_meta WHERE name = 'revision'",
      );
      await client.query('COMMIT');
      this.#head = Number(head.rows[0]?.value ?? 0);
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
    // Listen before open resolves, so a change made right after is announced to this instance.
    const first = await this.#connectListener();
    this.#listenLoop = this.#keepListening(first);
  }

  async get(key: string): Promise<Item | undefined> {
    checkPgKey(key);
    const r = await this.#query<ItemRow>(
      'get',
      'SELECT key, value, revision, expires FROM gatehouse_items WHERE key = $1 AND (expires IS NULL OR expires > $2)',
      [key, this.#now()],
    );
    return r.rows[0] && toItem(r.rows[0]);
  }

  async put(key: string, value: string, opts?: PutOptions): Promise<Item> {
    checkPgKey(key);
    checkValue(value);
    // Validates the TTL before anything is sent; the stored expiry counts from the transaction's time.
    expiryFrom(this.#now(), opts);
    return this.#write('put', key, async (tx, current) => {
      await this.#expireIfDue(tx, key, current);
      return this.#store(tx, key, value, expiryFrom(tx.now, opts));
    });
  }

  async create(key: string, value: string, opts?: PutOptions): Promise<Item> {
    checkPgKey(key);
    checkValue(value);
    expiryFrom(this.#now(), opts);
    return this.#write('create', key, async (tx, current) => {
      if (await this.#expireIfDue(tx, key, current)) throw alreadyExists(key);
      return this.#store(tx, key, value, expiryFrom(tx.now, opts));
    });
  }

  async compareAndSwap(
    key: string,
    expectedRevision: number | null,
    value: string,
    opts?: PutOptions,
  ): Promise<Item> {
    checkPgKey(key);
    checkValue(value);
    expiryFrom(this.#now(), opts);
    return this.#write('compareAndSwap', key, async (tx, current) => {
      const actual = (await this.#expireIfDue(tx, key, current))?.revision ?? null;
      if (actual !== expectedRevision) throw conflict(key, expectedRevision, actual);
      return this.#store(tx, key, value, expiryFrom(tx.now, opts));
    });
  }

  async delete(key: string): Promise<boolean> {
    checkPgKey(key);
    return this.#write('delete', key, async (tx, current) => {
      if (!(await this.#expireIfDue(tx, key, current))) return false;
      await this.#remove(tx, key);
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
    if (opts?.limit === 0) return [];
    const r = await this.#query<ItemRow>(
      'range',
      `SELECT key, value, revision, expires FROM gatehouse_items
       WHERE key ${strict ? '>' : '>='} $1 AND ($2::text IS NULL OR key < $2)
         AND (expires IS NULL OR expires > $3)
       ORDER BY key LIMIT $4`,
      [lo, hi ?? null, this.#now(), opts?.limit ?? null],
    );
    return r.rows.map(toItem);
  }

  watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    // The start is fixed now, not on first next(): the watch covers changes after this call
    // (as far as this instance knows of them: its own writes, and others' once announced).
    const sub: Subscriber | undefined = this.#closed
      ? undefined
      : { prefix, waiters: new Waiters(), dirty: false };
    if (sub) this.#subscribers.add(sub);
    return this.#events(sub, this.#head, opts.signal);
  }

  async sweepExpired(): Promise<number> {
    this.#open();
    const now = this.#now();
    const expired = await this.#query<{ key: string }>(
      'sweep',
      'SELECT key FROM gatehouse_items WHERE expires IS NOT NULL AND expires <= $1 ORDER BY key',
      [now],
    );
    let n = 0;
    // One transaction per key: each takes the write lock briefly, and a key re-written meanwhile stays.
    for (const { key } of expired.rows) {
      const removed = await this.#write('sweep', key, async (tx, current) => {
        if (!current || current.expires === null || current.expires > tx.now) return false;
        await this.#remove(tx, key);
        return true;
      });
      if (removed) n++;
    }
    return n;
  }

  /**
   * Drop change-log rows that are both older than the retention time and
   * outside the newest retention rows; returns how many were dropped.
   * Watchers that still needed them fail with GH_ERR_CONFLICT.
   */
  async trimChanges(): Promise<number> {
    this.#open();
    const r = await this.#query<{ n: string }>(
      'trim',
      `WITH cutoff AS (
         SELECT max(revision) AS r FROM gatehouse_changes
         WHERE revision <= (SELECT value FROM gatehouse_meta WHERE name = 'revision') - $1 AND time < $2
       ), gone AS (
         DELETE FROM gatehouse_changes WHERE revision <= (SELECT r FROM cutoff) RETURNING 1
       ), mark AS (
         UPDATE gatehouse_meta SET value = greatest(value, (SELECT r FROM cutoff))
         WHERE name = 'compacted' AND (SELECT r FROM cutoff) IS NOT NULL
       )
       SELECT count(*) AS n FROM gone`,
      [this.#retentionRows, this.#now() - this.#retentionMs],
    );
    return Number(r.rows[0]?.n ?? 0);
  }

  /** True while the LISTEN connection is up (watchers are woken by NOTIFY, not polling). */
  get listening(): boolean {
    return this.#listening;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#wake();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => undefined);
    await this.#listenLoop;
    await this.#pool.end().catch(() => undefined);
  }

  // --- watch ---

  async *#events(
    sub: Subscriber | undefined,
    start: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<WatchEvent> {
    if (!sub) throw closedError(this.kind);
    const hi = prefixUpperBound(sub.prefix);
    let cursor = start;
    let failures = 0;
    try {
      while (!signal?.aborted && !this.#closed) {
        let batch: { events: WatchEvent[]; more: boolean; cursor: number };
        sub.dirty = false;
        try {
          batch = await this.#poll(sub.prefix, hi, cursor);
          failures = 0;
        } catch (e) {
          if (this.#closed || signal?.aborted) return;
          // Fell behind the trimmed log: the caller must re-read; anything else (the server gone,
          // a dropped connection) is retried from the same revision, so nothing is skipped.
          if (e instanceof GatehouseError && e.code === 'GH_ERR_CONFLICT') throw e;
          this.#report('watch', e);
          failures++;
          await sub.waiters.wait(Math.min(this.#pollMs * 2 ** Math.min(failures, 4), 5000), signal);
          continue;
        }
        cursor = batch.cursor;
        if (cursor > this.#head) this.#head = cursor;
        for (const ev of batch.events) {
          if (signal?.aborted || this.#closed) return;
          yield ev;
        }
        if (!batch.more && !sub.dirty) {
          await sub.waiters.wait(this.#listening ? this.#safetyMs : this.#pollMs, signal);
        }
      }
    } finally {
      this.#subscribers.delete(sub);
    }
  }

  async #poll(prefix: string, hi: string | undefined, cursor: number) {
    // One statement, one snapshot: the head and the rows agree. Writers commit in revision
    // order (they serialize on the counter row), so everything up to the head is visible.
    const r = await this.#query<{
      head: string;
      compacted: string;
      revision: string | null;
      key: string | null;
      type: 'put' | 'delete' | null;
      value: Buffer | null;
      expires: string | null;
    }>(
      'watch',
      `SELECT h.value AS head, k.value AS compacted, c.revision, c.key, c.type, c.value, c.expires
       FROM gatehouse_meta h
       JOIN gatehouse_meta k ON k.name = 'compacted'
       LEFT JOIN LATERAL (
         SELECT revision, key, type, value, expires FROM gatehouse_changes
         WHERE revision > $1 AND revision <= h.value AND key >= $2 AND ($3::text IS NULL OR key < $3)
         ORDER BY revision LIMIT ${WATCH_BATCH}
       ) c ON true
       WHERE h.name = 'revision'
       ORDER BY c.revision`,
      [cursor, prefix, hi ?? null],
    );
    const first = r.rows[0];
    const head = Number(first?.head ?? cursor);
    const compacted = Number(first?.compacted ?? 0);
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
    const rows = r.rows.filter((x) => x.revision !== null);
    const events = rows.map(
      (x): WatchEvent =>
        x.type === 'put'
          ? {
              type: 'put',
              item: makeItem(
                x.key!,
                x.value?.toString('utf8') ?? '',
                Number(x.revision),
                x.expires === null ? null : Number(x.expires),
              ),
            }
          : { type: 'delete', key: x.key!, revision: Number(x.revision) },
    );
    const more = rows.length === WATCH_BATCH;
    return { events, more, cursor: more ? Number(rows[rows.length - 1]!.revision) : head };
  }

  /** Wakes the watchers a change of `key` concerns (all of them when the key is unknown). */
  #wake(key?: string): void {
    for (const s of this.#subscribers) {
      if (key !== undefined && !key.startsWith(s.prefix)) continue;
      s.dirty = true;
      s.waiters.wakeAll();
    }
  }

  async #connectListener(): Promise<Listener> {
    const c = new pg.Client({ ...this.#connection, application_name: POSTGRES_LISTENER_NAME });
    // Attached before connecting, so an end that comes early is not missed.
    const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
    // Errors end the connection; #keepListening notices through 'end' and reconnects.
    c.on('error', (error) => this.#report('listen', error));
    c.on('notification', (n) => {
      if (n.channel !== POSTGRES_NOTIFY_CHANNEL) return;
      const payload = n.payload ?? '';
      const space = payload.indexOf(' ');
      const revision = Number(space < 0 ? payload : payload.slice(0, space));
      if (Number.isFinite(revision) && revision > this.#head) this.#head = revision;
      this.#wake(space < 0 ? undefined : payload.slice(space + 1));
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${POSTGRES_NOTIFY_CHANNEL}`);
    } catch (e) {
      await c.end().catch(() => undefined);
      throw e;
    }
    return { client: c, ended };
  }

  /**
   * Holds the LISTEN connection open; when it drops, watchers fall back to
   * polling, and it is re-opened with backoff. Each (re)connect wakes every
   * watcher to read the change log from its own revision: that is the resync,
   * and why a notification lost while disconnected loses no change.
   */
  async #keepListening(first: Listener): Promise<void> {
    let client: Listener | undefined = first;
    let delay = this.#reconnectMs;
    while (!this.#closed) {
      if (client) {
        const c = client.client;
        this.#listener = c;
        this.#listening = true;
        delay = this.#reconnectMs;
        this.#wake();
        const ended = client.ended;
        await new Promise<void>((resolve) => {
          void ended.then(resolve);
          this.#closing.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        this.#listening = false;
        if (this.#listener === c) this.#listener = undefined;
        if (this.#closed) {
          await c.end().catch(() => undefined);
          return;
        }
        this.#wake();
        this.#report('listen', new Error('the LISTEN connection ended; watchers poll until it is back'));
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.#closing.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      if (this.#closed) return;
      delay = Math.min(delay * 2, Math.max(5000, this.#reconnectMs));
      try {
        client = await this.#connectListener();
        if (this.#closed) {
          await client.client.end().catch(() => undefined);
          return;
        }
      } catch (e) {
        client = undefined;
        this.#report('listen', e);
      }
    }
  }

  // --- writes ---

  /**
   * Runs `step` in a transaction that first locks the revision counter (so
   * writes commit one at a time, in revision order) and reads `key`'s row;
   * sends NOTIFY for what changed, commits, then wakes local watchers.
   */
  async #write<T>(
    op: string,
    key: string,
    step: (tx: WriteTx, current: { revision: number; expires: number | null } | undefined) => Promise<T>,
  ): Promise<T> {
    this.#open();
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (e) {
      throw wrapPgError(e, op, this.where, this.#setting);
    }
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const locked = await client.query<{ value: string }>(
        "SELECT value FROM gatehouse_meta WHERE name = 'revision' FOR UPDATE",
      );
      if (!locked.rows[0]) throw new Error('gatehouse_meta has no revision row');
      // A statement of its own, after the lock: in READ COMMITTED it sees every write committed
      // before the lock was granted (a join with the locking statement would see an older row).
      const r = await client.query<{ revision: string; expires: string | null }>(
        'SELECT revision, expires FROM gatehouse_items WHERE key = $1',
        [key],
      );
      const row = r.rows[0];
      let head = Number(locked.rows[0].value);
      const start = head;
      const tx: WriteTx = { client, now: this.#now(), next: () => ++head, changed: [] };
      const current =
        row === undefined
          ? undefined
          : { revision: Number(row.revision), expires: row.expires === null ? null : Number(row.expires) };
      const result = await step(tx, current);
      if (head !== start) {
        await client.query(
          `WITH m AS (UPDATE gatehouse_meta SET value = $1 WHERE name = 'revision')
           SELECT pg_notify($2, p) FROM unnest($3::text[]) AS p`,
          [
            head,
            POSTGRES_NOTIFY_CHANNEL,
            tx.changed.map((c) =>
              c.key.length <= MAX_NOTIFY_KEY ? `${c.revision} ${c.key}` : `${c.revision}`,
            ),
          ],
        );
      }
      await client.query('COMMIT');
      if (head > this.#head) this.#head = head;
      for (const c of tx.changed) this.#wake(c.key);
      return result;
    } catch (e) {
      await client.query('ROLLBACK').catch((err: unknown) => {
        broken = err instanceof Error ? err : new Error(String(err));
      });
      throw wrapPgError(e, op, this.where, this.#setting);
    } finally {
      // A connection that could not even roll back is dropped from the pool, not reused.
      client.release(broken);
    }
  }

  /** Removes an expired row (logging a delete for watchers) so the write sees the key as missing. */
  async #expireIfDue(
    tx: WriteTx,
    key: string,
    current: { revision: number; expires: number | null } | undefined,
  ): Promise<{ revision: number } | undefined> {
    if (current && current.expires !== null && current.expires <= tx.now) {
      await this.#remove(tx, key);
      return undefined;
    }
    return current;
  }

  async #store(tx: WriteTx, key: string, value: string, expires: number | null): Promise<Item> {
    const revision = tx.next();
    const bytes = Buffer.from(value, 'utf8');
    await tx.client.query(
      `WITH up AS (
         INSERT INTO gatehouse_items (key, value, revision, expires) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires
       )
       INSERT INTO gatehouse_changes (revision, key, type, value, expires, time) VALUES ($3, $1, 'put', $2, $4, $5)`,
      [key, bytes, revision, expires, tx.now],
    );
    tx.changed.push({ revision, key });
    return makeItem(key, value, revision, expires);
  }

  async #remove(tx: WriteTx, key: string): Promise<void> {
    const revision = tx.next();
    await tx.client.query(
      `WITH gone AS (DELETE FROM gatehouse_items WHERE key = $1)
       INSERT INTO gatehouse_changes (revision, key, type, value, expires, time) VALUES ($2, $1, 'delete', NULL, NULL, $3)`,
      [key, revision, tx.now],
    );
    tx.changed.push({ revision, key });
  }

  // --- plumbing ---

  async #query<R extends pg.QueryResultRow>(
    op: string,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    this.#open();
    try {
      return await this.#pool.query<R>(text, values);
    } catch (e) {
      if (this.#closed) throw closedError(this.kind);
      throw wrapPgError(e, op, this.where, this.#setting);
    }
  }

  #background(): void {
    if (this.#closed) return;
    Promise.all([this.sweepExpired(), this.trimChanges()]).catch((error: unknown) => {
      // Expired items are already invisible, so a failed sweep loses nothing; report it and retry next tick.
      this.#report('sweep', error);
    });
  }

  #report(op: string, error: unknown): void {
    if (this.#closed) return;
    diagnostics_channel.channel(POSTGRES_BACKEND_ERROR_CHANNEL).publish({ backend: this, op, error });
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  #open(): void {
    if (this.#closed) throw closedError(this.kind);
  }
}
