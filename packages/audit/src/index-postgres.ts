import diagnostics_channel from 'node:diagnostics_channel';
import pg from 'pg';
import { AuditUnavailableError } from './errors.js';
import type { AuditEvent } from './events.js';
import { ensureSchema } from './pg-schema.js';
import {
  type AuditQuery,
  type AuditSearchResult,
  encodeCursor,
  type NormalizedQuery,
  normalizeQuery,
  tokenize,
} from './query.js';
import type { AuditIndex } from './sinks/types.js';

export interface PostgresAuditIndexOptions {
  /** node-postgres connection (the same database as the PostgreSQL backend). */
  connection: pg.ClientConfig;
  /** Sink name, default 'index'. */
  name?: string;
  /** Pooled connections. Default 4. */
  poolSize?: number;
}

/** Failures of idle pooled connections are published here ({ index, error }); queries report theirs to the caller. */
export const POSTGRES_AUDIT_INDEX_ERROR_CHANNEL = 'gatehouse:audit:index:postgres:error';

/** pg_advisory_xact_lock key serializing table creation across gateways (distinct from the backend's). */
const SCHEMA_LOCK = 0x6761756469;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gatehouse_audit_events (
  seq bigserial PRIMARY KEY,
  id text COLLATE "C" NOT NULL UNIQUE,
  -- ISO 8601 UTC with milliseconds: text order is time order, as in the SQLite index and the cursors.
  time text COLLATE "C" NOT NULL,
  type text COLLATE "C" NOT NULL,
  code text NOT NULL,
  "user" text COLLATE "C",
  session_id text COLLATE "C",
  json text NOT NULL,
  search tsvector NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_audit_time_id ON gatehouse_audit_events (time, id);
CREATE INDEX IF NOT EXISTS gatehouse_audit_type_time ON gatehouse_audit_events (type, time, id);
CREATE INDEX IF NOT EXISTS gatehouse_audit_user_time ON gatehouse_audit_events ("user", time, id);
CREATE INDEX IF NOT EXISTS gatehouse_audit_session_time ON gatehouse_audit_events (session_id, time, id);
CREATE INDEX IF NOT EXISTS gatehouse_audit_search ON gatehouse_audit_events USING gin (search);
`;

/** tsvector limits (PostgreSQL docs, "Text Search Types"): longer lexemes are refused, later positions clamp. */
const MAX_LEXEME_BYTES = 2046;
const MAX_POSITION = 16383;
const MAX_POSITIONS_PER_LEXEME = 256;
/** A tsvector must stay under 1 MB; an event whose text would exceed this is indexed up to here. */
const MAX_VECTOR_CHARS = 512 * 1024;

/** A lexeme as tsvector/tsquery input syntax: quoted, so no character is read as an operator. */
function quoteLexeme(t: string): string {
  return `'${t.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/**
 * The event's words as a tsvector literal with positions. Words are cut by
 * the same tokenizer as the in-memory search (and SQLite's unicode61:
 * letters and digits, lower case, accents removed), not by PostgreSQL's
 * parser, whose idea of a letter depends on the database's locale.
 */
export function searchVector(text: string): string {
  const positions = new Map<string, number[]>();
  let pos = 0;
  for (const tok of tokenize(text)) {
    pos = Math.min(pos + 1, MAX_POSITION);
    if (Buffer.byteLength(tok) > MAX_LEXEME_BYTES) continue;
    const list = positions.get(tok);
    if (!list) positions.set(tok, [pos]);
    else if (list.length < MAX_POSITIONS_PER_LEXEME && list.at(-1) !== pos) list.push(pos);
  }
  const parts: string[] = [];
  let size = 0;
  for (const [tok, list] of positions) {
    const part = `${quoteLexeme(tok)}:${list.join(',')}`;
    size += part.length + 1;
    if (size > MAX_VECTOR_CHARS) break;
    parts.push(part);
  }
  return parts.join(' ');
}

/** Every term must appear; a term of several tokens (`user:bob`) as a phrase, as in the SQLite index. */
export function searchQuery(terms: readonly string[]): string | undefined {
  const parts = terms
    .map((t) => tokenize(t).map(quoteLexeme).join(' <-> '))
    .filter((p) => p.length > 0)
    .map((p) => `(${p})`);
  return parts.length > 0 ? parts.join(' & ') : undefined;
}

/**
 * The audit index for gateways sharing a PostgreSQL backend: every gateway
 * writes its events here, so a search on any of them finds all of them
 * (issue 18). B-tree indexes serve the time/type/user/session filters and
 * keyset pagination, a GIN index over a tsvector the free text. Like the
 * SQLite index it is a sink whose `write` is idempotent on the event id, so
 * the AuditLog's spool can replay after an outage without duplicates; the
 * JSON-lines files stay each gateway's durable record.
 */
export class PostgresAuditIndex implements AuditIndex {
  readonly name: string;
  readonly #pool: pg.Pool;
  #closed = false;

  /** Connects and creates the table and indexes if missing (under an advisory lock: gateways may start together). */
  static async open(opts: PostgresAuditIndexOptions): Promise<PostgresAuditIndex> {
    const idx = new PostgresAuditIndex(opts);
    try {
      await ensureSchema(idx.#pool, SCHEMA_LOCK, SCHEMA);
      return idx;
    } catch (e) {
      await idx.close();
      throw idx.#unavailable('open', e);
    }
  }

  private constructor(opts: PostgresAuditIndexOptions) {
    this.name = opts.name ?? 'index';
    this.#pool = new pg.Pool({
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      query_timeout: 15_000,
      ...opts.connection,
      application_name: 'gatehouse-audit',
      max: opts.poolSize ?? 4,
    });
    // A dropped idle connection must not crash the gateway; the next query opens a new one.
    this.#pool.on('error', (error) =>
      diagnostics_channel.channel(POSTGRES_AUDIT_INDEX_ERROR_CHANNEL).publish({ index: this, error }),
    );
  }

  write(e: AuditEvent): Promise<void> {
    return this.writeBatch([e]);
  }

  /** One statement for the whole batch; `lines` as the log serialized them. */
  async writeBatch(events: AuditEvent[], lines?: readonly string[]): Promise<void> {
    if (events.length === 0) return;
    const cols: (string | null)[][] = [[], [], [], [], [], [], [], []];
    events.forEach((e, i) => {
      // The log hands over the event's JSON line; the JSON text never ends in whitespace.
      const json = lines?.[i]?.trimEnd() ?? JSON.stringify(e);
      const row = [
        e.id,
        e.time,
        e.type,
        e.code,
        e.user ?? null,
        e.session_id ?? null,
        json,
        searchVector(json),
      ];
      row.forEach((v, c) => {
        cols[c]!.push(v);
      });
    });
    await this.#query(
      'write',
      `INSERT INTO gatehouse_audit_events (id, time, type, code, "user", session_id, json, search)
       SELECT id, time, type, code, u, s, json, search::tsvector
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
         AS t(id, time, type, code, u, s, json, search)
       ON CONFLICT (id) DO NOTHING`,
      cols,
    );
  }

  async search(query: AuditQuery): Promise<AuditSearchResult> {
    const q = normalizeQuery(query);
    const { sql, params } = buildSearch(q);
    const r = await this.#query<{ json: string }>('search', sql, params);
    const events = r.rows.slice(0, q.limit).map((row) => JSON.parse(row.json) as AuditEvent);
    const last = events.at(-1);
    return r.rows.length > q.limit && last ? { events, next_cursor: encodeCursor(last) } : { events };
  }

  /** The query plan for a search (EXPLAIN), for checking which indexes a filter uses. */
  async plan(query: AuditQuery, opts: { noSeqScan?: boolean } = {}): Promise<string[]> {
    const { sql, params } = buildSearch(normalizeQuery(query));
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      // A tiny test table is cheapest to scan; this shows which index the planner would use on a big one.
      if (opts.noSeqScan) await client.query('SET LOCAL enable_seqscan = off');
      const r = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
      await client.query('ROLLBACK');
      return r.rows.map((row) => row['QUERY PLAN']);
    } finally {
      client.release();
    }
  }

  /** Removes events older than `time` (ISO), for retention; returns how many. */
  async deleteBefore(time: string): Promise<number> {
    const r = await this.#query('retention', 'DELETE FROM gatehouse_audit_events WHERE time < $1', [time]);
    return r.rowCount ?? 0;
  }

  async count(): Promise<number> {
    const r = await this.#query<{ n: string }>(
      'count',
      'SELECT count(*) AS n FROM gatehouse_audit_events',
      [],
    );
    return Number(r.rows[0]?.n ?? 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end().catch(() => undefined);
  }

  async #query<R extends pg.QueryResultRow>(
    op: string,
    text: string,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw new AuditUnavailableError('the PostgreSQL audit index is closed');
    try {
      return await this.#pool.query<R>(text, values);
    } catch (e) {
      throw this.#unavailable(op, e);
    }
  }

  #unavailable(op: string, e: unknown): AuditUnavailableError {
    const msg = e instanceof Error ? e.message : String(e);
    return new AuditUnavailableError(`PostgreSQL audit index ${op} failed: ${msg}`, {
      hint: 'Check that PostgreSQL is reachable (backend.uri); events are kept in the JSON-lines files and the spool, and indexed once it is back.',
      cause: e,
    });
  }
}

function buildSearch(q: NormalizedQuery): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const text = searchQuery(q.terms);
  if (text !== undefined) where.push(`e.search @@ ${p(text)}::tsquery`);
  if (q.from !== undefined) where.push(`e.time >= ${p(q.from)}`);
  if (q.to !== undefined) where.push(`e.time < ${p(q.to)}`);
  if (q.types !== undefined) where.push(`e.type = ANY(${p(q.types)}::text[])`);
  if (q.user !== undefined) where.push(`e."user" = ${p(q.user)}`);
  if (q.session_id !== undefined) where.push(`e.session_id = ${p(q.session_id)}`);
  if (q.after !== undefined) {
    // Keyset pagination: a row comparison the (.., time, id) indexes can seek to.
    where.push(`(e.time, e.id) < (${p(q.after.time)}, ${p(q.after.id)})`);
  }
  // One row more than asked tells whether another page exists.
  const limit = p(q.limit + 1);
  const sql =
    `SELECT e.json FROM gatehouse_audit_events e${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}` +
    ` ORDER BY e.time DESC, e.id DESC LIMIT ${limit}`;
  return { sql, params };
}
