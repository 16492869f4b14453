/**
 * Recordings readable from every gateway sharing a PostgreSQL backend
 * (docs/decisions/0038-shared-recordings.md). Each gateway records into its
 * own FileRecordingStore (the durable local record, as before); an uploader
 * copies every ended recording's chunks into PostgreSQL, retrying until it
 * succeeds, so a gateway that was cut off catches up when the database is
 * back (and at its next start). Reads take the local copy when there is one,
 * the uploaded one otherwise; a recording another gateway has not uploaded
 * yet is refused with GH_ERR_RECORDING_NOT_UPLOADED naming that gateway.
 *
 *   gatehouse_recordings        one row per recording: meta, gateway, uploaded
 *   gatehouse_recording_chunks  (session_id, seq) -> the gzip chunk, as on disk
 */
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import pg from 'pg';
import { ensureSchema } from '../pg-schema.js';
import { decodeChunk } from './codec.js';
import { isSessionId, notFound, RecordingError, validateSessionId } from './errors.js';
import { chunkFileName, FileRecordingStore, type FileRecordingStoreOptions } from './file-store.js';
import { filterMetas, parseMeta } from './meta.js';
import type {
  RecordingEvent,
  RecordingMeta,
  RecordingQuery,
  RecordingStore,
  SessionRecorder,
} from './types.js';

const gunzip = promisify(zlib.gunzip);

/** Upload attempts and failures are published here ({ store, sessionId?, error?, uploaded? }). */
export const POSTGRES_RECORDINGS_CHANNEL = 'gatehouse:recordings:postgres';

/** pg_advisory_xact_lock key serializing table creation across gateways (distinct from the backend's and the index's). */
const SCHEMA_LOCK = 0x67726563;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gatehouse_recordings (
  session_id text COLLATE "C" PRIMARY KEY,
  gateway text NOT NULL,
  "user" text COLLATE "C" NOT NULL,
  kind text NOT NULL,
  -- ISO 8601 UTC: text order is time order.
  started text COLLATE "C" NOT NULL,
  uploaded boolean NOT NULL DEFAULT false,
  meta text NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_recordings_started ON gatehouse_recordings (started, session_id);
CREATE TABLE IF NOT EXISTS gatehouse_recording_chunks (
  session_id text COLLATE "C" NOT NULL REFERENCES gatehouse_recordings ON DELETE CASCADE,
  seq integer NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (session_id, seq)
);
`;

/** Marks of recordings whose upload committed (`<dir>/.uploaded/<session_id>`): not a session id, so listings skip it. */
const UPLOADED_DIR = '.uploaded';

export interface PostgresRecordingStoreOptions extends FileRecordingStoreOptions {
  /** node-postgres connection (the database of the PostgreSQL backend). */
  connection: pg.ClientConfig;
  /** This gateway's name, stored with its recordings (shown when one is not uploaded yet). */
  gateway: string;
  /** Pooled connections. Default 2. */
  poolSize?: number;
  /** First wait before retrying a failed upload; doubles up to 30 s. Default 1000 ms. */
  retryMs?: number;
}

export class PostgresRecordingStore implements RecordingStore {
  readonly local: FileRecordingStore;
  readonly gateway: string;
  readonly #dir: string;
  readonly #pool: pg.Pool;
  readonly #retryMs: number;
  #closed = false;
  /** The running upload pass, and whether another was asked for meanwhile. */
  #pass: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;

  /** Connects, creates the tables if missing, and starts uploading what earlier runs left. */
  static async open(opts: PostgresRecordingStoreOptions): Promise<PostgresRecordingStore> {
    const store = new PostgresRecordingStore(opts);
    try {
      await ensureSchema(store.#pool, SCHEMA_LOCK, SCHEMA);
    } catch (e) {
      await store.#pool.end().catch(() => undefined);
      throw unavailable('open', e);
    }
    store.kick();
    return store;
  }

  private constructor(opts: PostgresRecordingStoreOptions) {
    this.local = new FileRecordingStore(opts);
    this.#dir = this.local.dir;
    this.gateway = opts.gateway;
    this.#retryMs = opts.retryMs ?? 1000;
    this.#pool = new pg.Pool({
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      query_timeout: 60_000,
      ...opts.connection,
      application_name: 'gatehouse-recordings',
      max: opts.poolSize ?? 2,
    });
    // A dropped idle connection must not crash the gateway; the next query opens a new one.
    this.#pool.on('error', (error) => publish({ store: this, error }));
  }

  async create(
    meta: Omit<RecordingMeta, 'started' | 'ended' | 'output_bytes'>,
    opts: { onError?: (err: Error) => void } = {},
  ): Promise<SessionRecorder> {
    const rec = await this.local.create({ ...meta, gateway: this.gateway }, opts);
    // Announce it, so other gateways list it and say where it is while it runs. Best effort:
    // with the database down the local file still records, and the upload announces it later.
    const started = await this.local.get(meta.session_id);
    if (started) {
      this.#pool
        .query(
          `INSERT INTO gatehouse_recordings (session_id, gateway, "user", kind, started, meta)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO NOTHING`,
          [
            started.session_id,
            this.gateway,
            started.user,
            started.kind,
            started.started,
            JSON.stringify(started),
          ],
        )
        .catch((error) => publish({ store: this, sessionId: meta.session_id, error }));
    }
    const close = rec.close.bind(rec);
    // Once the recording has its end, upload it.
    return Object.assign(rec, {
      close: async () => {
        try {
          await close();
        } finally {
          this.kick();
        }
      },
    });
  }

  async get(sessionId: string): Promise<RecordingMeta | undefined> {
    const local = await this.local.get(sessionId);
    if (local) return local;
    const row = await this.#row(sessionId);
    return row?.meta;
  }

  async list(q: RecordingQuery = {}): Promise<RecordingMeta[]> {
    filterMetas([], q); // validates the query before any of it reaches SQL
    const local = await this.local.list(q);
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.user !== undefined) where.push(`"user" = ${p(q.user)}`);
    if (q.kind !== undefined) where.push(`kind = ${p(q.kind)}`);
    // Bounds a little wider than asked (text vs. parsed time): filterMetas applies the exact ones.
    if (q.from !== undefined)
      where.push(`started >= ${p(new Date(Date.parse(q.from) - 1000).toISOString())}`);
    if (q.to !== undefined) where.push(`started <= ${p(new Date(Date.parse(q.to) + 1000).toISOString())}`);
    const limit = p(q.limit ?? 100);
    let remote: RecordingMeta[] = [];
    try {
      const r = await this.#pool.query<{ meta: string }>(
        `SELECT meta FROM gatehouse_recordings${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
         ORDER BY started DESC, session_id DESC LIMIT ${limit}`,
        params,
      );
      remote = r.rows.map((row) => parseMeta(row.meta, 'in PostgreSQL'));
    } catch (e) {
      throw unavailable('list', e);
    }
    const byId = new Map(remote.map((m) => [m.session_id, m]));
    for (const m of local) byId.set(m.session_id, m);
    return filterMetas([...byId.values()], q);
  }

  /**
   * Throws unless `read` can give the whole recording here: a recording
   * another gateway has not uploaded yet (live there, or waiting for its
   * upload) is GH_ERR_RECORDING_NOT_UPLOADED naming that gateway.
   */
  async assertReadable(sessionId: string): Promise<void> {
    if (await this.local.get(sessionId)) return;
    const row = await this.#row(sessionId);
    if (!row) throw notFound(sessionId);
    if (!row.uploaded) {
      // The row is written when the recording starts and marked at the end of its upload:
      // from here the session may still run there, or have ended with its upload pending.
      throw new RecordingError(
        'GH_ERR_RECORDING_NOT_UPLOADED',
        `recording ${sessionId} was made on gateway ${row.gateway} and is not uploaded yet: the session is still running there, or its upload is pending until that gateway reaches the database`,
        {
          hint: `play it on gateway ${row.gateway}, or here once its upload is done (gateways upload a recording when its session ends, and retry until they succeed)`,
        },
      );
    }
  }

  async *read(
    sessionId: string,
    opts: { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<RecordingEvent, void, undefined> {
    validateSessionId(sessionId);
    if (await this.local.get(sessionId)) {
      yield* this.local.read(sessionId, opts);
      return;
    }
    await this.assertReadable(sessionId);
    // Uploaded recordings have ended: no following needed. Chunks one at a time, in order.
    for (let seq = 1; ; seq++) {
      if (opts.signal?.aborted) return;
      let rows: { data: Buffer }[];
      try {
        rows = (
          await this.#pool.query<{ data: Buffer }>(
            'SELECT data FROM gatehouse_recording_chunks WHERE session_id = $1 AND seq = $2',
            [sessionId, seq],
          )
        ).rows;
      } catch (e) {
        throw unavailable('read', e);
      }
      const gz = rows[0]?.data;
      if (!gz) return;
      let events: RecordingEvent[];
      try {
        events = decodeChunk((await gunzip(gz)).toString('utf8'));
      } catch (err) {
        throw new RecordingError('GH_ERR_VALIDATION', `recording ${sessionId}: chunk ${seq} is corrupt`, {
          cause: err,
          hint: 'the uploaded copy is damaged; the gateway that made it keeps the original files',
        });
      }
      yield* events;
    }
  }

  async recover(reason: string): Promise<string[]> {
    const done = await this.local.recover(reason);
    this.kick();
    return done;
  }

  /** Removes the shared copy first (so no gateway keeps serving it), then the local one. */
  async delete(sessionId: string): Promise<boolean> {
    validateSessionId(sessionId);
    let shared = false;
    try {
      const r = await this.#pool.query('DELETE FROM gatehouse_recordings WHERE session_id = $1', [sessionId]);
      shared = (r.rowCount ?? 0) > 0;
    } catch (e) {
      throw unavailable('delete', e);
    }
    const local = await this.local.delete(sessionId);
    await rm(path.join(this.#dir, UPLOADED_DIR, sessionId), { force: true });
    return shared || local;
  }

  /** Session ids of ended local recordings not uploaded yet. */
  async pending(): Promise<string[]> {
    const uploaded = new Set(await readdirOrEmpty(path.join(this.#dir, UPLOADED_DIR)));
    const out: string[] = [];
    for (const id of (await readdirOrEmpty(this.#dir)).filter((n) => isSessionId(n) && !uploaded.has(n))) {
      const meta = await this.local.get(id);
      if (meta?.ended !== undefined) out.push(id);
    }
    return out;
  }

  /** Starts an upload pass now (or right after the running one). */
  kick(): void {
    if (this.#closed) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#pass = this.#uploadAll().finally(() => {
      this.#pass = undefined;
      if (this.#again) {
        this.#again = false;
        this.kick();
      }
    });
  }

  /** Waits until every ended local recording is uploaded (tests, shutdown). */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#pass) await this.#pass;
      if ((await this.pending()).length === 0) return;
      if (this.#closed) return;
      this.kick();
      await this.#pass;
    }
  }

  async #uploadAll(): Promise<void> {
    let failed = false;
    try {
      for (const id of await this.pending()) {
        if (this.#closed) return;
        try {
          await this.#upload(id);
          publish({ store: this, sessionId: id, uploaded: true });
        } catch (error) {
          failed = true;
          publish({ store: this, sessionId: id, error });
          break;
        }
      }
    } catch (error) {
      failed = true;
      publish({ store: this, error });
    }
    if (!failed) {
      this.#failures = 0;
      return;
    }
    // Retry with backoff until it goes through: the local files stay the record meanwhile.
    const wait = Math.min(30_000, this.#retryMs * 2 ** this.#failures++);
    if (!this.#closed) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.kick();
      }, wait);
      this.#timer.unref();
    }
  }

  /** One recording in one transaction: its chunks as stored on disk, then its row marked uploaded. */
  async #upload(id: string): Promise<void> {
    const meta = await this.local.get(id);
    if (!meta || meta.ended === undefined) return;
    const sdir = path.join(this.#dir, id);
    const names = (await readdir(sdir)).filter((f) => /^\d{6}\.jsonl\.gz$/.test(f)).sort();
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO gatehouse_recordings (session_id, gateway, "user", kind, started, uploaded, meta)
         VALUES ($1, $2, $3, $4, $5, false, $6)
         ON CONFLICT (session_id) DO UPDATE SET meta = EXCLUDED.meta, uploaded = false`,
        [id, meta.gateway ?? this.gateway, meta.user, meta.kind, meta.started, JSON.stringify(meta)],
      );
      await client.query('DELETE FROM gatehouse_recording_chunks WHERE session_id = $1', [id]);
      for (const [i, name] of names.entries()) {
        // Chunks are numbered from 1 without gaps (a reader stops at the first missing one).
        if (name !== chunkFileName(i + 1)) break;
        await client.query(
          'INSERT INTO gatehouse_recording_chunks (session_id, seq, data) VALUES ($1, $2, $3)',
          [id, i + 1, await readFile(path.join(sdir, name))],
        );
      }
      await client.query('UPDATE gatehouse_recordings SET uploaded = true WHERE session_id = $1', [id]);
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw unavailable('upload', e);
    } finally {
      client.release();
    }
    await mkdir(path.join(this.#dir, UPLOADED_DIR), { recursive: true, mode: 0o700 });
    await writeFile(path.join(this.#dir, UPLOADED_DIR, id), '', { mode: 0o600 });
  }

  async #row(
    sessionId: string,
  ): Promise<{ meta: RecordingMeta; gateway: string; uploaded: boolean } | undefined> {
    validateSessionId(sessionId);
    let rows: { meta: string; gateway: string; uploaded: boolean }[];
    try {
      rows = (
        await this.#pool.query<{ meta: string; gateway: string; uploaded: boolean }>(
          'SELECT meta, gateway, uploaded FROM gatehouse_recordings WHERE session_id = $1',
          [sessionId],
        )
      ).rows;
    } catch (e) {
      throw unavailable('read', e);
    }
    const row = rows[0];
    return row
      ? { meta: parseMeta(row.meta, 'in PostgreSQL'), gateway: row.gateway, uploaded: row.uploaded }
      : undefined;
  }

  /** Closes the live recorders (each writes its end), makes one last upload pass, and disconnects. */
  async close(): Promise<void> {
    await this.local.close();
    if (this.#closed) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.kick();
    while (this.#pass) await this.#pass;
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#pool.end().catch(() => undefined);
  }
}

function publish(msg: {
  store: PostgresRecordingStore;
  sessionId?: string;
  error?: unknown;
  uploaded?: boolean;
}) {
  diagnostics_channel.channel(POSTGRES_RECORDINGS_CHANNEL).publish(msg);
}

function unavailable(op: string, e: unknown): RecordingError {
  if (e instanceof RecordingError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new RecordingError('GH_ERR_AUDIT_UNAVAILABLE', `PostgreSQL recordings ${op} failed: ${msg}`, {
    hint: 'Check that PostgreSQL is reachable (backend.uri); recordings stay in the local data dir and are uploaded once it is back.',
    cause: e,
  });
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
