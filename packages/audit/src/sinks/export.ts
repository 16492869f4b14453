import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEmitter } from '../emitter.js';
import type { AuditEvent, AuditEventInput } from '../events.js';
import { Spool } from '../spool.js';
import type { AuditSink, AuditSinkStatus } from './types.js';

/** One event as an export sink ships it: its id (for deduplication), the event, and its JSON text. */
export interface ExportItem {
  id: string;
  event: AuditEvent;
  /** The event as one line of JSON, without the newline. */
  json: string;
}

/**
 * What a receiver did with a batch. Omitted (undefined) means it took every
 * item. Indices point into the batch that was sent.
 */
export interface SendResult {
  /** Items that failed with a retryable status: sent again (only they), after a backoff. */
  retry?: number[];
  /** Items the receiver refused for good: not retried, recorded by an `audit.sink.rejected` alarm. */
  rejected?: { index: number; status: string; reason: string }[];
}

/** The network half of a sink: ships one batch, throws when the receiver could not be reached. */
export interface Transport {
  /** Called once before the first batch (e.g. Elasticsearch installs its index template); throws to retry. */
  start?(signal: AbortSignal): Promise<void>;
  /** `signal` aborts when the sink closes: a request in flight must end then, not at its timeout. */
  send(items: ExportItem[], signal: AbortSignal): Promise<SendResult | undefined>;
  close?(): Promise<void>;
}

/** What happens when a sink's spool reaches `maxSpoolBytes`. */
export type SpoolFullPolicy = 'block' | 'drop_oldest';

export interface ExportOptions {
  /** Unique among the gateway's sinks; names the spool files. */
  name: string;
  /** Directory of this sink's spool (`<name>.spool.jsonl`); under the data dir so a restart keeps it. */
  dir: string;
  /** Bytes of undelivered events the spool may hold. Default 256 MiB. */
  maxSpoolBytes?: number;
  /** At the bound: refuse new sessions (`block`, default) or drop the oldest events with an alarm. */
  onFull?: SpoolFullPolicy;
  /** Most events per request. Default 500. */
  batchMax?: number;
  /** First retry delay; doubles up to `retryMaxMs`. Default 500 ms. */
  retryInitialMs?: number;
  /** Default 30 s. */
  retryMaxMs?: number;
  /** How long `close` keeps trying to deliver what is queued before it leaves it in the spool. Default 5 s. */
  closeTimeoutMs?: number;
}

/** Spool fill levels (fractions of the bound) that raise an `audit.sink.backlog` alarm when crossed upwards. */
const ALARM_LEVELS = [0.5, 0.9] as const;
/** drop_oldest frees this much below the bound at once, so it does not drop one event per append. */
const DROP_TO = 0.9;
/**
 * The delivered offset is written to disk at most this often (and on close):
 * one rename per small batch cost more than the batch. A crash resends what
 * was delivered since (at least once).
 */
const PERSIST_EVERY_MS = 250;
/** Rejected ids listed in one alarm event (the count is always complete). */
const MAX_IDS_IN_ALARM = 20;

type Alarm = AuditEventInput & { user: 'system'; sink: string };

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The part every export sink shares: a bounded on-disk queue in front of a
 * `Transport`, drained in order by one pump with batching and exponential
 * backoff.
 *
 * The AuditLog hands each batch of events to `writeBatch`, which appends them
 * to the spool with one write(2) and returns: the gateway's audit path never
 * waits for the network, only for that local append (a slow or dead receiver
 * costs spool space, not latency). The pump reads the spool from its
 * committed offset, sends up to `batchMax` events, and commits the offset
 * only after the receiver took them, so a restart resends at most the batch
 * in flight (at least once; every event carries its `id` to deduplicate on).
 *
 * When the spool reaches its bound, `block` makes `available()` false (new
 * sessions are refused, like on a full disk; events of work already running
 * are still spooled) and `drop_oldest` discards the oldest events, counted in
 * an `audit.sink.dropped` alarm. Alarms are ordinary audit events emitted
 * through the log the sink belongs to (`attach`).
 */
export class ExportSink implements AuditSink {
  readonly name: string;
  readonly kind: string;
  readonly #transport: Transport;
  readonly #spool: Spool;
  readonly #maxBytes: number;
  readonly #policy: SpoolFullPolicy;
  readonly #batchMax: number;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #closeTimeoutMs: number;
  /** Bytes in the spool file (delivered and not). */
  #size = 0;
  #emitter: AuditEmitter | undefined;
  /** Alarms raised before `attach` (or while detached): sent once there is a log to take them. */
  #early: Alarm[] = [];
  #started = false;
  #state: 'ok' | 'failing' = 'ok';
  #lastError: string | undefined;
  /** Index into ALARM_LEVELS of the highest level alarmed since the spool was last empty (-1: none). */
  #level = -1;
  #full = false;
  #dropped = 0;
  #rejected = 0;
  #delivered = 0;
  #persistedAt = 0;
  #sending = false;
  /** Bumped when drop_oldest moves the offset, so a batch in flight does not commit over it. */
  #epoch = 0;
  /** Ends the pump's wait for new events. */
  #wakeIdle: (() => void) | undefined;
  /** Ends the pump's backoff wait (retryNow, close); new events do not, or a dead receiver would be hammered. */
  #wakeRetry: (() => void) | undefined;
  #closing = false;
  readonly #abort = new AbortController();
  #pump: Promise<void>;

  constructor(kind: string, transport: Transport, opts: ExportOptions) {
    this.kind = kind;
    this.name = opts.name;
    this.#transport = transport;
    this.#maxBytes = opts.maxSpoolBytes ?? 256 * 1024 * 1024;
    this.#policy = opts.onFull ?? 'block';
    this.#batchMax = opts.batchMax ?? 500;
    this.#retryInitialMs = opts.retryInitialMs ?? 500;
    this.#retryMaxMs = Math.max(this.#retryInitialMs, opts.retryMaxMs ?? 30_000);
    this.#closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
    if (!(this.#maxBytes >= 1024))
      throw new TypeError(`audit sink ${this.name}: maxSpoolBytes must be >= 1024`);
    if (!(this.#batchMax >= 1)) throw new TypeError(`audit sink ${this.name}: batchMax must be >= 1`);
    this.#spool = new Spool(opts.dir, opts.name);
    // What an earlier run left undelivered is sent first.
    this.#spool.load();
    this.#size = fileSize(this.#spool.path);
    this.#full = this.#pendingBytes() >= this.#maxBytes;
    this.#pump = this.#run();
  }

  /** The log this sink belongs to: alarms become audit events in it. */
  attach(emitter: AuditEmitter): void {
    this.#emitter = emitter;
    const early = this.#early;
    this.#early = [];
    for (const a of early) this.#alarm(a);
  }

  write(e: AuditEvent): void {
    this.writeBatch([e]);
  }

  /** Appends the events to the spool (one write); the pump ships them. Throws only if the disk refuses. */
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void {
    if (events.length === 0) return;
    const text = lines ? lines.join('') : events.map((e) => `${JSON.stringify(e)}\n`).join('');
    this.#spool.append(text, events.length);
    this.#size += Buffer.byteLength(text);
    this.#afterAppend();
    this.#wakeIdle?.();
  }

  /** False while the spool is at its bound with policy `block`: the gateway refuses new sessions. */
  available(): boolean {
    return !(this.#full && this.#policy === 'block');
  }

  unavailableReason(): string {
    return (
      `the audit sink '${this.name}' is full: ${this.#spool.pending} events (${this.#pendingBytes()} bytes) ` +
      `wait for its ${this.kind} receiver (${this.#lastError ?? 'slower than the event rate'})`
    );
  }

  status(): AuditSinkStatus {
    return {
      name: this.name,
      type: this.kind,
      state: this.#full ? 'full' : this.#state,
      queued: this.#spool.pending,
      queued_bytes: this.#pendingBytes(),
      max_bytes: this.#maxBytes,
      on_full: this.#policy,
      delivered: this.#delivered,
      dropped: this.#dropped,
      rejected: this.#rejected,
      ...(this.#lastError === undefined ? {} : { error: this.#lastError }),
    };
  }

  /** Resolves once everything spooled so far was delivered (or rejected or dropped). For tests and benches. */
  async idle(): Promise<void> {
    while (this.#spool.pending > 0 || this.#sending) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Ends the backoff wait and tries the receiver now. */
  retryNow(): void {
    this.#wakeRetry?.();
  }

  async close(): Promise<void> {
    if (!this.#closing) {
      // One more chance to deliver what is queued; what is left stays in the spool for the next start.
      const deadline = Date.now() + this.#closeTimeoutMs;
      while (this.#spool.pending > 0 && this.#state === 'ok' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      this.#closing = true;
      this.#wakeIdle?.();
      this.#wakeRetry?.();
      // A request still in flight ends now; its batch stays in the spool.
      this.#abort.abort(new Error(`audit sink ${this.name} is closing`));
    }
    await this.#pump;
    // What was delivered since the last persisted offset is not sent again by the next start.
    if (this.#spool.pending > 0 && this.#spool.offset > 0) this.#spool.commit(this.#spool.offset, 0);
    await this.#transport.close?.();
  }

  #pendingBytes(): number {
    return Math.max(0, this.#size - this.#spool.offset);
  }

  #afterAppend(): void {
    let bytes = this.#pendingBytes();
    if (bytes >= this.#maxBytes && this.#policy === 'drop_oldest') {
      if (this.#sending) return; // the pump drops once its request is answered (see #run)
      this.#dropOldest();
      bytes = this.#pendingBytes();
    }
    const fill = bytes / this.#maxBytes;
    let level = this.#level;
    while (level + 1 < ALARM_LEVELS.length && fill >= ALARM_LEVELS[level + 1]!) level++;
    if (level > this.#level) {
      this.#level = level;
      this.#alarm({
        type: 'audit.sink.backlog',
        user: 'system',
        sink: this.name,
        queued: this.#spool.pending,
        queued_bytes: bytes,
        max_bytes: this.#maxBytes,
        percent: Math.floor(fill * 100),
        error: this.#lastError ?? '',
        message: `audit sink '${this.name}' has ${this.#spool.pending} events waiting (${Math.floor(fill * 100)}% of its spool)`,
      });
    }
    if (!this.#full && bytes >= this.#maxBytes) {
      this.#full = true;
      this.#alarm({
        type: 'audit.sink.full',
        user: 'system',
        sink: this.name,
        on_full: this.#policy,
        queued: this.#spool.pending,
        max_bytes: this.#maxBytes,
        error: this.#lastError ?? '',
        message:
          this.#policy === 'block'
            ? `audit sink '${this.name}' is full (${this.#maxBytes} bytes): new sessions are refused until its receiver takes events again`
            : `audit sink '${this.name}' is full (${this.#maxBytes} bytes): the oldest events are dropped`,
      });
    }
  }

  /** drop_oldest: moves the offset past the oldest events until the spool is back under DROP_TO of its bound. */
  #dropOldest(): void {
    const target = this.#maxBytes * DROP_TO;
    let count = 0;
    let end = this.#spool.offset;
    while (this.#size - end > target) {
      const { lines } = this.#spool.read(this.#batchMax);
      if (lines.length === 0) break;
      let n = 0;
      for (const l of lines) {
        end = l.end;
        n++;
        if (this.#size - end <= target) break;
      }
      this.#spool.commit(end, n);
      count += n;
    }
    if (count === 0) return;
    this.#epoch++;
    this.#dropped += count;
    this.#compact();
    this.#alarm({
      type: 'audit.sink.dropped',
      user: 'system',
      sink: this.name,
      dropped: count,
      dropped_total: this.#dropped,
      error: this.#lastError ?? '',
      message: `audit sink '${this.name}' dropped its ${count} oldest events (spool full, on_full: drop_oldest)`,
    });
  }

  /** After drops the delivered prefix of the spool file is dead weight: rewrite the file without it. */
  #compact(): void {
    if (this.#spool.offset < this.#maxBytes) return;
    this.#size = this.#spool.compact();
  }

  async #run(): Promise<void> {
    for (;;) {
      try {
        await this.#pumpLoop();
        return;
      } catch (err) {
        // The spool itself failed (read, commit, clear): the events stay on disk; try again later.
        this.#sending = false;
        this.#failed(err);
        await this.#sleep(this.#retryMaxMs);
        if (this.#closing) return;
      }
    }
  }

  async #pumpLoop(): Promise<void> {
    let delay = this.#retryInitialMs;
    for (;;) {
      if (this.#closing) return;
      if (!this.#started) {
        try {
          await this.#transport.start?.(this.#abort.signal);
          this.#started = true;
        } catch (err) {
          this.#failed(err);
          await this.#sleep(delay);
          delay = Math.min(delay * 2, this.#retryMaxMs);
          continue;
        }
      }
      if (this.#spool.pending === 0) {
        this.#drained();
        await new Promise<void>((resolve) => {
          this.#wakeIdle = () => {
            this.#wakeIdle = undefined;
            resolve();
          };
        });
        continue;
      }
      const epoch = this.#epoch;
      const batch = this.#readBatch();
      if (batch.items.length === 0) {
        // Only unreadable lines: moved aside by #readBatch, nothing to send.
        this.#spool.commit(batch.end, batch.lines);
        continue;
      }
      let items = batch.items;
      let ok = false;
      /** Refused in the last answer: not delivered. */
      let refused = 0;
      while (!this.#closing && this.#epoch === epoch) {
        let result: SendResult | undefined;
        this.#sending = true;
        try {
          result = await this.#transport.send(items, this.#abort.signal);
        } catch (err) {
          this.#sending = false;
          this.#failed(err);
          await this.#sleep(delay);
          delay = Math.min(delay * 2, this.#retryMaxMs);
          continue;
        }
        this.#sending = false;
        delay = this.#retryInitialMs;
        this.#recovered();
        refused = result?.rejected?.length ?? 0;
        if (result?.rejected && refused > 0) this.#reject(items, result.rejected);
        const retry = result?.retry ?? [];
        if (retry.length === 0) {
          ok = true;
          break;
        }
        // Only what failed retryably goes again; the rest of the batch is in.
        this.#delivered += items.length - retry.length - refused;
        items = retry.map((i) => items[i]!);
        this.#lastError = `${retry.length} events of a batch failed with a retryable status`;
        await this.#sleep(delay);
        delay = Math.min(delay * 2, this.#retryMaxMs);
      }
      // Dropped while in flight (drop_oldest): the offset already moved on, do not commit over it.
      if (this.#epoch !== epoch) continue;
      if (!ok) return; // closing: the batch stays in the spool for the next start
      this.#delivered += items.length - refused;
      const persist = Date.now() - this.#persistedAt >= PERSIST_EVERY_MS;
      this.#spool.commit(batch.end, batch.lines, persist);
      if (persist) this.#persistedAt = Date.now();
      // New sessions resume once the receiver has made real room (not at the first event below the bound).
      if (this.#full && this.#pendingBytes() < this.#maxBytes * DROP_TO) this.#full = false;
      if (this.#policy === 'drop_oldest' && this.#pendingBytes() >= this.#maxBytes) this.#dropOldest();
    }
  }

  #readBatch(): { items: ExportItem[]; end: number; lines: number } {
    const { lines } = this.#spool.read(this.#batchMax);
    const items: ExportItem[] = [];
    let end = this.#spool.offset;
    for (const l of lines) {
      end = l.end;
      try {
        const event = JSON.parse(l.text) as AuditEvent;
        items.push({ id: event.id, event, json: l.text });
      } catch {
        // A torn line (crash mid-append): kept for an operator, never sent half.
        this.#spool.reject(l.text);
        this.#rejected++;
      }
    }
    return { items, end, lines: lines.length };
  }

  #reject(items: ExportItem[], rejected: NonNullable<SendResult['rejected']>): void {
    this.#rejected += rejected.length;
    for (const r of rejected) {
      const item = items[r.index];
      // Kept next to the spool, so an operator can fix and resend what the receiver refused.
      if (item) this.#spool.reject(item.json);
    }
    const first = rejected[0]!;
    this.#alarm({
      type: 'audit.sink.rejected',
      user: 'system',
      sink: this.name,
      rejected: rejected.length,
      ids: rejected.slice(0, MAX_IDS_IN_ALARM).map((r) => items[r.index]?.id ?? ''),
      status: first.status,
      error: first.reason,
      message: `the ${this.kind} receiver of audit sink '${this.name}' rejected ${rejected.length} events (${first.status}: ${first.reason}); they are kept in ${this.name}.rejected.jsonl`,
    });
  }

  #failed(err: unknown): void {
    this.#lastError = message(err);
    if (this.#state === 'failing') return;
    this.#state = 'failing';
    this.#alarm({
      type: 'audit.sink.backlog',
      user: 'system',
      sink: this.name,
      queued: this.#spool.pending,
      queued_bytes: this.#pendingBytes(),
      max_bytes: this.#maxBytes,
      percent: Math.floor((this.#pendingBytes() / this.#maxBytes) * 100),
      error: this.#lastError,
      message: `audit sink '${this.name}' cannot reach its ${this.kind} receiver (${this.#lastError}); events are spooled and retried`,
    });
  }

  #recovered(): void {
    if (this.#state === 'ok') return;
    this.#state = 'ok';
    this.#lastError = undefined;
  }

  /** The spool is empty: remove it, and close the alarm episode with one `audit.sink.recovered`. */
  #drained(): void {
    if (this.#size > 0) {
      this.#spool.clear();
      this.#size = 0;
    }
    if (this.#level >= 0 || this.#full) {
      this.#level = -1;
      this.#full = false;
      this.#alarm({
        type: 'audit.sink.recovered',
        user: 'system',
        sink: this.name,
        message: `audit sink '${this.name}' delivered its backlog`,
      });
    }
  }

  /** The backoff wait: ends after `ms`, or early on retryNow/close. */
  #sleep(ms: number): Promise<void> {
    if (this.#closing) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakeRetry = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      // A backoff must never keep a process alive on its own.
      timer.unref();
      this.#wakeRetry = done;
    });
  }

  #alarm(a: Alarm): void {
    if (!this.#emitter) {
      this.#early.push(a);
      return;
    }
    // Not awaited: the alarm reaches this sink's spool too, behind the events it is about.
    void this.#emitter.record(a);
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/** `<dir>/<name>.spool.jsonl`, for messages and docs. */
export function exportSpoolPath(dir: string, name: string): string {
  return join(dir, `${name}.spool.jsonl`);
}
