/**
 * The buffering half of every SessionRecorder: events become JSON lines in
 * memory, lines are sealed into chunks (by size or after flushMs), and
 * chunks are handed to a sink strictly in order. The session never waits on
 * the disk; past a hard backlog limit the recorder fails instead of growing
 * without bound, and the adapter ends the session.
 */
import { encodeEvent } from './codec.js';
import { RecordingError } from './errors.js';
import type { DesktopInput, RecordingEvent, SessionRecorder } from './types.js';

export const DEFAULT_CHUNK_BYTES = 64 * 1024;
export const DEFAULT_FLUSH_MS = 1000;
export const DEFAULT_MAX_BACKLOG_BYTES = 8 * 1024 * 1024;

/** Per-event cost counted against chunkBytes besides its payload (timestamp, type, JSON). */
const EVENT_OVERHEAD = 32;

/**
 * Where sealed chunks go, in two steps so that slow work overlaps: `prepare`
 * runs as soon as a chunk is sealed (several may run at once: compress,
 * write a temporary file), `commit` makes it visible and is called strictly
 * in order, one at a time. A prepared chunk that will never be committed
 * (the recorder failed) is handed to `discard`.
 */
export interface ChunkSink<P = unknown> {
  /** Chunk `seq` (1, 2, ...): JSON lines, each ending in "\n". */
  prepare(seq: number, body: string): Promise<P>;
  commit(seq: number, prepared: P): Promise<void>;
  discard?(prepared: P): Promise<void>;
  /** Called once, after the last chunk, from close(). */
  finish(totals: RecordingTotals): Promise<void>;
}

export interface RecordingTotals {
  ended: string;
  output_bytes: number;
  chunks: number;
  /** Why the recording is incomplete, when a write failed. */
  error?: string | undefined;
}

export interface RecorderOptions {
  sessionId: string;
  /** Epoch ms of t = 0 (the meta's `started`). */
  startMs: number;
  clock: () => Date;
  // biome-ignore lint/suspicious/noExplicitAny: the recorder only passes prepared values through
  sink: ChunkSink<any>;
  chunkBytes?: number | undefined;
  flushMs?: number | undefined;
  /** Unwritten bytes beyond which the recorder fails (default 8 MiB). */
  maxBacklogBytes?: number | undefined;
  /** Unwritten bytes beyond which `needsDrain` turns true (default: a quarter of maxBacklogBytes). */
  highWaterBytes?: number | undefined;
  onError?: ((err: Error) => void) | undefined;
}

export class ChunkedRecorder implements SessionRecorder {
  readonly sessionId: string;
  readonly #o: RecorderOptions;
  readonly #chunkBytes: number;
  readonly #flushMs: number;
  readonly #maxBacklog: number;
  readonly #highWater: number;
  #lines: string[] = [];
  #pendingBytes = 0;
  /** Bytes accepted but not yet stored (pending lines + sealed chunks in flight). */
  #backlog = 0;
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;
  #queue: Promise<void> = Promise.resolve();
  #lastT = 0;
  #outputBytes = 0;
  #failed: Error | undefined;
  #closing: Promise<void> | undefined;
  #drainWaiters: (() => void)[] = [];

  constructor(o: RecorderOptions) {
    this.sessionId = o.sessionId;
    this.#o = o;
    this.#chunkBytes = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.#flushMs = o.flushMs ?? DEFAULT_FLUSH_MS;
    this.#maxBacklog = o.maxBacklogBytes ?? DEFAULT_MAX_BACKLOG_BYTES;
    this.#highWater = o.highWaterBytes ?? Math.max(this.#chunkBytes, Math.floor(this.#maxBacklog / 4));
  }

  get needsDrain(): boolean {
    return this.#backlog > this.#highWater && !this.#failed;
  }

  /** Resolves when the backlog is back under the high-water mark (or the recorder failed or closed). */
  drain(): Promise<void> {
    if (!this.needsDrain) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Bytes accepted but not yet stored. */
  get backlogBytes(): number {
    return this.#backlog;
  }

  output(data: Uint8Array): void {
    if (!this.#accepting()) return;
    this.#outputBytes += data.byteLength;
    this.#push({ t: this.#now(), type: 'output', data }, data.byteLength);
  }

  input(data: Uint8Array): void {
    if (!this.#accepting()) return;
    this.#push({ t: this.#now(), type: 'input', data }, data.byteLength);
  }

  resize(cols: number, rows: number): void {
    if (!this.#accepting()) return;
    this.#push({ t: this.#now(), type: 'resize', cols, rows }, 0);
  }

  marker(text: string): void {
    if (!this.#accepting()) return;
    this.#push({ t: this.#now(), type: 'marker', text }, text.length);
  }

  desktopInput(input: DesktopInput): void {
    if (!this.#accepting()) return;
    this.#push({ t: this.#now(), type: 'desktop_input', input }, 0);
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#seal();
    await this.#queue;
    const totals: RecordingTotals = {
      ended: new Date(this.#o.startMs + Math.max(this.#lastT, this.#elapsed())).toISOString(),
      output_bytes: this.#outputBytes,
      chunks: this.#seq,
      ...(this.#failed ? { error: this.#failed.message } : {}),
    };
    try {
      await this.#o.sink.finish(totals);
    } catch (err) {
      this.#fail(err);
    }
    this.#wakeDrainers();
    // The failure was already reported through onError; without one the caller learns it here.
    if (this.#failed && !this.#o.onError) throw this.#failed;
  }

  #accepting(): boolean {
    return !this.#failed && this.#closing === undefined;
  }

  #elapsed(): number {
    return this.#o.clock().getTime() - this.#o.startMs;
  }

  /** Timestamps never go backwards, even if the wall clock does. */
  #now(): number {
    const t = Math.max(this.#lastT, Math.round(this.#elapsed()));
    this.#lastT = t;
    return t;
  }

  #push(e: RecordingEvent, payloadBytes: number): void {
    // Encoding now copies the caller's buffer (adapters reuse theirs).
    this.#lines.push(encodeEvent(e));
    const cost = payloadBytes + EVENT_OVERHEAD;
    this.#pendingBytes += cost;
    this.#backlog += cost;
    if (this.#backlog > this.#maxBacklog) {
      this.#fail(
        new RecordingError(
          'GH_ERR_AUDIT_UNAVAILABLE',
          `session ${this.sessionId}: the recording fell ${this.#backlog} bytes behind (limit ${this.#maxBacklog})`,
          { hint: 'the recordings storage is too slow or stalled; check the disk of the data dir' },
        ),
      );
      return;
    }
    if (this.#pendingBytes >= this.#chunkBytes) this.#seal();
    else if (!this.#timer) this.#timer = setTimeout(() => this.#seal(), this.#flushMs);
  }

  #seal(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0 || this.#failed) return;
    const body = `${this.#lines.join('\n')}\n`;
    const cost = this.#pendingBytes;
    this.#lines = [];
    this.#pendingBytes = 0;
    const seq = ++this.#seq;
    const sink = this.#o.sink;
    // Settled into a value at once, so a failure is never an unhandled rejection while earlier chunks commit.
    const prepared = sink.prepare(seq, body).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    this.#queue = this.#queue.then(async () => {
      const p = await prepared;
      if (!p.ok) return this.#fail(p.error);
      if (this.#failed) {
        await sink.discard?.(p.value).catch(() => {
          // Best effort: the recording already failed and was reported once.
        });
        return;
      }
      try {
        await sink.commit(seq, p.value);
      } catch (err) {
        await sink.discard?.(p.value).catch(() => {
          // Best effort, as above: the commit failure itself is reported.
        });
        this.#fail(err);
        return;
      }
      this.#backlog -= cost;
      if (!this.needsDrain) this.#wakeDrainers();
    });
  }

  #fail(err: unknown): void {
    if (this.#failed) return;
    const e = err instanceof Error ? err : new Error(String(err));
    this.#failed = e;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lines = [];
    this.#pendingBytes = 0;
    this.#wakeDrainers();
    const onError = this.#o.onError;
    // Deferred: the failure may surface inside an adapter's output() call, which must not re-enter it.
    if (onError) queueMicrotask(() => onError(e));
  }

  #wakeDrainers(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of w) resolve();
  }
}
