/**
 * Recordings on the local disk (docs/decisions/0008-recordings.md):
 *
 *   <dir>/<session_id>/meta.json         RecordingMeta (atomic rename; rewritten at the end)
 *   <dir>/<session_id>/000001.jsonl.gz   gzip of JSON lines, one event each
 *
 * Chunks appear whole (written under a temporary name, then renamed), so a
 * reader never sees half a chunk and a crash loses only what was not sealed.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { decodeChunk } from './codec.js';
import { isSessionId, notFound, RecordingError, validateSessionId } from './errors.js';
import { filterMetas, parseMeta } from './meta.js';
import { ChunkedRecorder, type ChunkSink, type RecordingTotals } from './recorder.js';
import type {
  RecordingEvent,
  RecordingMeta,
  RecordingQuery,
  RecordingStore,
  SessionRecorder,
} from './types.js';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export interface FileRecordingStoreOptions {
  dir: string;
  clock?: () => Date;
  /** Raw bytes of events per chunk before it is sealed (default 64 KiB). */
  chunkBytes?: number;
  /** A chunk with pending events is sealed after this long (default 1000 ms). */
  flushMs?: number;
  /** Unwritten bytes per session beyond which the recorder fails (default 8 MiB). */
  maxBacklogBytes?: number;
  /** fsync each chunk and meta before the rename (default false: the page cache survives a process crash). */
  fsync?: boolean;
  /** gzip level (default 1: terminal output compresses well even at the fastest level). */
  gzipLevel?: number;
  /** How often a following reader looks for new chunks (default 200 ms). */
  pollMs?: number;
}

export const META_FILE = 'meta.json';
/** Markers of recordings in progress (`<dir>/.live/<session_id>`, holding the owner's pid). */
const LIVE_DIR = '.live';
const LIST_PARALLELISM = 32;

export function chunkFileName(seq: number): string {
  return `${String(seq).padStart(6, '0')}.jsonl.gz`;
}

export class FileRecordingStore implements RecordingStore {
  readonly dir: string;
  readonly #o: FileRecordingStoreOptions;
  readonly #clock: () => Date;
  readonly #live = new Set<ChunkedRecorder>();
  #closed = false;

  constructor(opts: FileRecordingStoreOptions) {
    this.dir = path.resolve(opts.dir);
    this.#o = opts;
    this.#clock = opts.clock ?? (() => new Date());
  }

  /**
   * The store's directory is made by the first recording and assumed after
   * that, as .live/ is (two fewer syscalls per session); if one was removed
   * under a running gateway, the write that needs it fails with ENOENT and it
   * is made again.
   */
  #dirsMade = false;

  async #mkdirSession(sdir: string): Promise<void> {
    if (this.#dirsMade) {
      try {
        await mkdir(sdir, { mode: 0o700 });
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.#dirsMade = false;
      }
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await mkdir(sdir, { mode: 0o700 });
  }

  #sessionDir(id: string): string {
    return path.join(this.dir, validateSessionId(id));
  }

  async create(
    meta: Omit<RecordingMeta, 'started' | 'ended' | 'output_bytes'>,
    opts: { onError?: (err: Error) => void } = {},
  ): Promise<SessionRecorder> {
    if (this.#closed) {
      throw new RecordingError('GH_ERR_AUDIT_UNAVAILABLE', 'the recording store is closed', {
        hint: 'the gateway is shutting down; start the session again once it is back',
      });
    }
    const sdir = this.#sessionDir(meta.session_id);
    try {
      await this.#mkdirSession(sdir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new RecordingError(
          'GH_ERR_ALREADY_EXISTS',
          `a recording for session ${meta.session_id} already exists`,
          {
            hint: 'every session needs a fresh session id',
          },
        );
      }
      throw err;
    }
    const started = this.#clock();
    const full: RecordingMeta = { ...stripUndefined(meta), started: started.toISOString(), output_bytes: 0 };
    const fsync = this.#o.fsync ?? false;
    await writeAtomic(path.join(sdir, META_FILE), `${JSON.stringify(full)}\n`, fsync);
    // Which process owns this live recording: if it dies, the next one finalizes it (recover()).
    const marker = path.join(this.dir, LIVE_DIR, meta.session_id);
    const owner = `${JSON.stringify({ pid: process.pid })}\n`;
    try {
      writeFileSync(marker, owner, { mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(path.dirname(marker), { recursive: true, mode: 0o700 });
      writeFileSync(marker, owner, { mode: 0o600 });
    }
    this.#dirsMade = true;
    const level = this.#o.gzipLevel ?? 1;
    let stored = 0;
    const sink: ChunkSink<{ tmp: string; size: number }> = {
      prepare: async (seq, body) => {
        const gz = await gzip(body, { level });
        const tmp = await writeTemp(path.join(sdir, chunkFileName(seq)), gz, fsync);
        return { tmp, size: gz.byteLength };
      },
      commit: async (seq, p) => {
        await rename(p.tmp, path.join(sdir, chunkFileName(seq)));
        stored += p.size;
      },
      discard: (p) => rm(p.tmp, { force: true }),
      finish: async (totals: RecordingTotals) => {
        this.#live.delete(recorder);
        const done: RecordingMeta & { stored_bytes: number; chunks: number; error?: string } = {
          ...full,
          ...totals,
          stored_bytes: stored,
        };
        if (done.error === undefined) delete done.error;
        await writeAtomic(path.join(sdir, META_FILE), `${JSON.stringify(done)}\n`, fsync);
        await removeMarker(marker);
      },
    };
    const recorder = new ChunkedRecorder({
      sessionId: meta.session_id,
      startMs: started.getTime(),
      clock: this.#clock,
      sink,
      chunkBytes: this.#o.chunkBytes,
      flushMs: this.#o.flushMs,
      maxBacklogBytes: this.#o.maxBacklogBytes,
      onError: opts.onError,
    });
    this.#live.add(recorder);
    return recorder;
  }

  async get(sessionId: string): Promise<RecordingMeta | undefined> {
    const file = path.join(this.#sessionDir(sessionId), META_FILE);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseMeta(text, file);
  }

  async delete(sessionId: string): Promise<boolean> {
    const sdir = this.#sessionDir(sessionId);
    // Rename first: a listing or reader never sees half a recording, and a crash leaves a stray dir, not a damaged one.
    const gone = path.join(this.dir, `.deleting-${randomBytes(6).toString('hex')}`);
    try {
      await rename(sdir, gone);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    await rm(gone, { recursive: true, force: true });
    await rm(path.join(this.dir, LIVE_DIR, sessionId), { force: true });
    return true;
  }

  async list(q: RecordingQuery = {}): Promise<RecordingMeta[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    // Anything that is not a valid session id is not a recording directory (e.g. a stray temp file).
    const ids = names.filter((n) => isSessionId(n));
    const metas: RecordingMeta[] = [];
    // Bounded parallel reads: one meta.json per recording is the cost of a listing (see ADR 0008).
    for (let i = 0; i < ids.length; i += LIST_PARALLELISM) {
      const batch = await Promise.all(ids.slice(i, i + LIST_PARALLELISM).map((id) => this.get(id)));
      for (const m of batch) if (m) metas.push(m);
    }
    return filterMetas(metas, q);
  }

  async *read(
    sessionId: string,
    opts: { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<RecordingEvent, void, undefined> {
    const sdir = this.#sessionDir(sessionId);
    let meta = await this.get(sessionId);
    if (!meta) throw notFound(sessionId);
    const pollMs = this.#o.pollMs ?? 200;
    for (let seq = 1; ; ) {
      if (opts.signal?.aborted) return;
      const file = path.join(sdir, chunkFileName(seq));
      let gz: Buffer | undefined;
      try {
        gz = await readFile(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (gz) {
        let events: RecordingEvent[];
        try {
          events = decodeChunk((await gunzip(gz)).toString('utf8'));
        } catch (err) {
          throw new RecordingError('GH_ERR_VALIDATION', `recording ${sessionId}: chunk ${seq} is corrupt`, {
            cause: err,
            hint: `the file ${file} is damaged; earlier chunks are still readable`,
          });
        }
        yield* events;
        seq++;
        continue;
      }
      // Chunks are stored before the final meta, so once `ended` is seen a missing chunk means the end.
      if (meta?.ended !== undefined || !opts.follow) {
        if (meta?.ended === undefined) return;
        const fresh = await this.get(sessionId);
        if (fresh?.ended === meta.ended) return;
        meta = fresh;
        continue;
      }
      await sleep(pollMs, opts.signal);
      const fresh = await this.get(sessionId);
      if (fresh?.ended !== undefined) meta = fresh;
    }
  }

  /**
   * Finalizes the recordings a dead process left live (kill -9, a crash):
   * each gets its end (the time of its last stored chunk), its stored size
   * and `error: reason`, so listings stop calling it live and a following
   * reader (`play --follow`) ends. Recordings of live processes are left
   * alone. Returns the session ids it finalized.
   */
  async recover(reason: string): Promise<string[]> {
    const live = path.join(this.dir, LIVE_DIR);
    let names: string[];
    try {
      names = await readdir(live);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const mine = new Set([...this.#live].map((r) => r.sessionId));
    const done: string[] = [];
    for (const id of names.filter((n) => isSessionId(n))) {
      const marker = path.join(live, id);
      const owner = await readOwner(marker);
      // Another store in this process, or another live process, still writes it.
      if (mine.has(id) || (owner !== undefined && (owner === process.pid || processAlive(owner)))) continue;
      const meta = await this.get(id);
      if (meta && meta.ended === undefined) {
        const sdir = this.#sessionDir(id);
        const chunks = (await readdir(sdir)).filter((f) => /^\d{6}\.jsonl\.gz$/.test(f)).sort();
        let stored = 0;
        let last = Date.parse(meta.started);
        for (const f of chunks) {
          const st = await stat(path.join(sdir, f));
          stored += st.size;
          last = Math.max(last, st.mtimeMs);
        }
        const ended: RecordingMeta & { stored_bytes: number; chunks: number } = {
          ...meta,
          ended: new Date(last).toISOString(),
          stored_bytes: stored,
          chunks: chunks.length,
          error: reason,
        };
        await writeAtomic(path.join(sdir, META_FILE), `${JSON.stringify(ended)}\n`, this.#o.fsync ?? false);
        done.push(id);
      }
      await rm(marker, { force: true });
    }
    return done;
  }

  /** Closes every live recorder (each writes its last chunk and its end). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#live].map((r) => r.close()));
  }
}

/**
 * Removes a live-recording marker, gone already or not: a plain unlink, as
 * `rm` first lstat()s the path (one more syscall per session, issue 22).
 */
async function removeMarker(marker: string): Promise<void> {
  try {
    await unlink(marker);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The pid in a live-recording marker, if it can be read. */
async function readOwner(marker: string): Promise<number | undefined> {
  try {
    const pid = (JSON.parse(await readFile(marker, 'utf8')) as { pid?: unknown }).pid;
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    // A marker torn by the crash it is there for: its owner is gone.
    return undefined;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

async function writeAtomic(file: string, data: string | Uint8Array, fsync: boolean): Promise<void> {
  const tmp = await writeTemp(file, data, fsync);
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes `data` next to `file` under a temporary name (renamed into place by the caller). */
async function writeTemp(file: string, data: string | Uint8Array, fsync: boolean): Promise<string> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    if (fsync) {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } else {
      // Without fsync this is a copy into the page cache (a few us for a
      // chunk or a meta.json), while fs/promises' writeFile costs an open, a
      // write and a close each through the thread pool with their promises:
      // ~0.3 ms of the gateway's CPU per kube exec, which writes 3-4 such files
      // (issue 22). The audit log's JSON-lines writes are synchronous too.
      writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    }
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return tmp;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
