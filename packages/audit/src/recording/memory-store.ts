/**
 * RecordingStore in memory with the file store's semantics (same chunking,
 * flush timing, ordering, follow and error behaviour), for adapter tests.
 * `failWrites()` makes storage fail so adapters can test their onError path.
 */
import { decodeChunk } from './codec.js';
import { notFound, RecordingError, validateSessionId } from './errors.js';
import { filterMetas } from './meta.js';
import { ChunkedRecorder } from './recorder.js';
import type {
  RecordingEvent,
  RecordingMeta,
  RecordingQuery,
  RecordingStore,
  SessionRecorder,
} from './types.js';

export interface MemoryRecordingStoreOptions {
  clock?: () => Date;
  chunkBytes?: number;
  flushMs?: number;
  maxBacklogBytes?: number;
}

interface Entry {
  meta: RecordingMeta;
  chunks: string[];
  waiters: Set<() => void>;
}

export class MemoryRecordingStore implements RecordingStore {
  readonly #o: MemoryRecordingStoreOptions;
  readonly #clock: () => Date;
  readonly #entries = new Map<string, Entry>();
  readonly #live = new Set<ChunkedRecorder>();
  #failure: Error | undefined;
  #closed = false;

  constructor(opts: MemoryRecordingStoreOptions = {}) {
    this.#o = opts;
    this.#clock = opts.clock ?? (() => new Date());
  }

  /** From now on every chunk or meta write fails with `err` (recorders call onError). */
  failWrites(err: Error = new Error('recording storage failed (simulated)')): void {
    this.#failure = err;
  }

  /** Every event of a recording, decoded (convenience for assertions). */
  async events(sessionId: string): Promise<RecordingEvent[]> {
    const out: RecordingEvent[] = [];
    for await (const e of this.read(sessionId)) out.push(e);
    return out;
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
    const id = validateSessionId(meta.session_id);
    if (this.#entries.has(id)) {
      throw new RecordingError('GH_ERR_ALREADY_EXISTS', `a recording for session ${id} already exists`, {
        hint: 'every session needs a fresh session id',
      });
    }
    if (this.#failure) throw this.#failure;
    const started = this.#clock();
    const full = JSON.parse(JSON.stringify({ ...meta, started: started.toISOString(), output_bytes: 0 }));
    const entry: Entry = { meta: full, chunks: [], waiters: new Set() };
    this.#entries.set(id, entry);
    const wake = () => {
      for (const w of entry.waiters) w();
      entry.waiters.clear();
    };
    const recorder = new ChunkedRecorder({
      sessionId: id,
      startMs: started.getTime(),
      clock: this.#clock,
      chunkBytes: this.#o.chunkBytes,
      flushMs: this.#o.flushMs,
      maxBacklogBytes: this.#o.maxBacklogBytes,
      onError: opts.onError,
      sink: {
        prepare: async (_seq: number, body: string) => {
          if (this.#failure) throw this.#failure;
          return body;
        },
        commit: async (seq: number, body: string) => {
          if (this.#failure) throw this.#failure;
          if (seq !== entry.chunks.length + 1) throw new Error(`chunk ${seq} out of order`);
          entry.chunks.push(body);
          wake();
        },
        finish: async (totals) => {
          this.#live.delete(recorder);
          if (this.#failure) throw this.#failure;
          let stored = 0;
          for (const c of entry.chunks) stored += Buffer.byteLength(c);
          entry.meta = { ...entry.meta, ...totals, stored_bytes: stored };
          if (entry.meta.error === undefined) delete entry.meta.error;
          wake();
        },
      },
    });
    this.#live.add(recorder);
    return recorder;
  }

  async delete(sessionId: string): Promise<boolean> {
    return this.#entries.delete(sessionId);
  }

  async get(sessionId: string): Promise<RecordingMeta | undefined> {
    const e = this.#entries.get(validateSessionId(sessionId));
    return e ? { ...e.meta } : undefined;
  }

  async list(q: RecordingQuery = {}): Promise<RecordingMeta[]> {
    return filterMetas(
      [...this.#entries.values()].map((e) => ({ ...e.meta })),
      q,
    );
  }

  async *read(
    sessionId: string,
    opts: { follow?: boolean; signal?: AbortSignal } = {},
  ): AsyncGenerator<RecordingEvent, void, undefined> {
    const entry = this.#entries.get(validateSessionId(sessionId));
    if (!entry) throw notFound(sessionId);
    for (let i = 0; ; ) {
      if (opts.signal?.aborted) return;
      const chunk = entry.chunks[i];
      if (chunk !== undefined) {
        yield* decodeChunk(chunk);
        i++;
        continue;
      }
      if (entry.meta.ended !== undefined || !opts.follow) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          entry.waiters.delete(done);
          opts.signal?.removeEventListener('abort', done);
          resolve();
        };
        entry.waiters.add(done);
        opts.signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#live].map((r) => r.close()));
  }
}
