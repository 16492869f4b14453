import { channel } from 'node:diagnostics_channel';
import { withChain } from './chain.js';
import type { AuditEmitter, EmitOptions } from './emitter.js';
import { AuditUnavailableError, AuditValidationError } from './errors.js';
import { type AuditEvent, type AuditEventInput, codeFor, EVENT_CODES } from './events.js';
import { createIdGenerator } from './id.js';
import { OpenSessionJournal, type OrphanClose } from './open-sessions.js';
import type { AuditQuery, AuditSearchResult } from './query.js';
import type { AuditIndex, AuditSink, AuditSinkStatus } from './sinks/types.js';
import { Spool } from './spool.js';

export interface AuditLogOptions {
  /** Cluster name stamped on every event. */
  cluster: string;
  /** Where events go. An `index` not listed here is added as a sink too. */
  sinks: AuditSink[];
  /** Answers `search`. */
  index?: AuditIndex;
  /**
   * Directory for per-sink spool files (created 0700 on first use). One
   * process per spool directory: give the daemon and a CLI separate ones.
   */
  spoolDir: string;
  /** Time source for `time` and for the default ids. */
  clock?: () => Date;
  /** Id source; default: time-ordered UUIDv7. */
  idGen?: () => string;
  /** First retry delay after a sink fails; doubles up to `retryMaxMs`. Default 1000. */
  retryInitialMs?: number;
  /** Default 30000. */
  retryMaxMs?: number;
  /**
   * Sinks (by name) written after `emit` resolves instead of before, e.g. a
   * search index that can be rebuilt from the JSON-lines record. They are
   * batched and spooled on failure like the others; `search` first waits for
   * their pending writes, so a process always finds what it emitted. At
   * least one sink must stay in the foreground.
   */
  background?: string[];
  /**
   * How long a background sink collects events into one batch: the most a
   * background sink lags behind the record while it keeps up (plus the time
   * to write one batch). Large batches are what make a search index cheap
   * per event (one transaction, FTS5 merges amortized: decision 0015).
   * Default 200 ms.
   */
  backgroundFlushMs?: number;
  /**
   * A background batch this large is written at once, without waiting out
   * `backgroundFlushMs`, so a batch stays bounded under load. Default 4000.
   */
  backgroundBatchMax?: number;
  /**
   * Most events a background sink may have queued (emitted, not yet written
   * or spooled). Beyond it, `emit` also waits for that sink, so a sink slower
   * than the event rate slows the emitters instead of growing memory without
   * bound. Default 10000.
   */
  backgroundMaxQueued?: number;
  /**
   * Bytes of events (as JSON lines) each sink may hold in memory while
   * neither it nor its spool can be written (a full or read-only disk).
   * They are written as soon as either works again. Past this bound an event
   * is counted as lost, and the count is recorded (`audit.dropped`) once the
   * log recovers. Default 64 MiB.
   */
  memoryRetainMaxBytes?: number;
  /**
   * A file where the log keeps the start events of the sessions this process
   * has open (one process per file, like the spool dir). Sessions a killed
   * process left open are ended by `closeOrphanedSessions()` in the next.
   */
  sessionJournal?: string;
}

/**
 * What the log reports on `diagnostics_channel.channel('gatehouse:audit')`:
 * sink failures and recoveries, and problems it cannot throw to anyone.
 */
export type AuditDiagnostic =
  | { kind: 'sink_failed'; sink: string; error: string }
  | { kind: 'sink_recovered'; sink: string }
  | { kind: 'replay_failed'; sink: string; error: string; backlog: number }
  | { kind: 'spool_line_rejected'; sink: string; file: string }
  | { kind: 'backlog_event_failed'; sink: string; error: string }
  | { kind: 'retained'; sink: string; events: number; bytes: number; error: string }
  | { kind: 'dropped'; sink: string; lost: number; error: string }
  | { kind: 'record_failed'; type: string; error: string }
  | { kind: 'journal_failed'; path: string; error: string };

export const AUDIT_DIAGNOSTICS_CHANNEL = 'gatehouse:audit';

const SINK_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REPLAY_BATCH = 256;
/** How often a sink whose events wait in memory tries the disk again (new work is refused meanwhile). */
const RETAIN_RETRY_MS = 1000;

type ReplayStatus = 'done' | 'more' | 'failed';

interface Pending {
  e: AuditEvent;
  line: string;
  precondition: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * A sink that can take many events in one call (one write(2), one
 * transaction): group commit. `lines[i]` is `events[i]` as its JSON line
 * (with the newline), already serialized once by the log.
 */
type BatchSink = AuditSink & {
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void | Promise<void>;
};

function isChaining(s: AuditSink): boolean {
  return (s as { chained?: unknown }).chained === true;
}

function isBatchSink(s: AuditSink): s is BatchSink {
  return typeof (s as Partial<BatchSink>).writeBatch === 'function';
}

interface SinkState {
  sink: AuditSink;
  spool: Spool;
  /** True while the sink has a backlog: new events go to the spool so order is kept. */
  failing: boolean;
  /** Deliveries to one sink run one after another, in emit order. */
  chain: Promise<unknown>;
  /** Events emitted since the last flush; written together (one write / one transaction) on the next tick. */
  batch: Pending[];
  flushScheduled: boolean;
  timer: NodeJS.Timeout | undefined;
  delayMs: number;
  lastError: string | undefined;
  /** Written after emit resolves (see AuditLogOptions.background). */
  background: boolean;
  /** Events handed to this sink and not yet written or spooled. */
  queued: number;
  /**
   * Lines neither the sink nor its spool could take (full or read-only
   * disk), oldest first; they go to the spool (or the sink) before anything
   * newer, as soon as one of them works.
   */
  memory: string[];
  memoryBytes: number;
  /** The last spool append failed: nothing new is durable for this sink until one works. */
  spoolBroken: boolean;
  /** Events that did not fit in memory, not yet recorded as an audit.dropped event. */
  lost: number;
  lastSpoolError: unknown;
}

function noop(): void {}

/** One promise's outcome as Promise.allSettled gives it, without the array. */
function settle(p: Promise<void>): Promise<PromiseSettledResult<void>> {
  return p.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The audit log: fills in id/time/code/cluster, writes each event to every
 * sink, and never loses one silently. A sink that throws gets the event in
 * its on-disk spool instead, and a retry loop replays the spool in order once
 * the sink works again; until then later events queue behind the backlog.
 * Only if the spool cannot be written either does `emit` reject, so the
 * caller fails the audited action instead of letting it go unrecorded.
 */
/** Fields `#build` sets itself, whatever the input says. */
const LOG_OWNED = new Set(['id', 'time', 'type', 'code', 'cluster', 'chain']);

export class AuditLog implements AuditEmitter {
  readonly cluster: string;
  readonly #states: SinkState[];
  /** The states by role on the emit path, fixed at construction (see #dispatch). */
  readonly #chaining: SinkState[];
  readonly #foreground: SinkState[];
  readonly #background: SinkState[];
  readonly #index: AuditIndex | undefined;
  readonly #clock: () => Date;
  readonly #idGen: () => string;
  readonly #retryInitialMs: number;
  readonly #retryMaxMs: number;
  readonly #backgroundFlushMs: number;
  readonly #backgroundBatchMax: number;
  readonly #backgroundMaxQueued: number;
  readonly #memoryMaxBytes: number;
  readonly #journal: OpenSessionJournal | undefined;
  readonly #diag = channel(AUDIT_DIAGNOSTICS_CHANNEL);
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(opts: AuditLogOptions) {
    if (typeof opts.cluster !== 'string' || opts.cluster.length === 0) {
      throw new TypeError('AuditLog: cluster must be a non-empty string');
    }
    if (typeof opts.spoolDir !== 'string' || opts.spoolDir.length === 0) {
      throw new TypeError('AuditLog: spoolDir must be a non-empty path');
    }
    const sinks = [...opts.sinks];
    if (opts.index && !sinks.includes(opts.index)) sinks.push(opts.index);
    // An audit log that writes nowhere would accept every event and keep none.
    if (sinks.length === 0) throw new TypeError('AuditLog: at least one sink is required');
    const names = new Set<string>();
    for (const s of sinks) {
      if (!SINK_NAME.test(s.name)) {
        throw new TypeError(`AuditLog: sink name ${JSON.stringify(s.name)} must match ${SINK_NAME}`);
      }
      if (names.has(s.name)) throw new TypeError(`AuditLog: two sinks are named '${s.name}'`);
      names.add(s.name);
    }
    this.cluster = opts.cluster;
    this.#index = opts.index;
    this.#clock = opts.clock ?? (() => new Date());
    this.#idGen = opts.idGen ?? createIdGenerator(() => this.#clock().getTime());
    this.#retryInitialMs = opts.retryInitialMs ?? 1000;
    this.#retryMaxMs = Math.max(this.#retryInitialMs, opts.retryMaxMs ?? 30_000);
    const background = new Set(opts.background ?? []);
    for (const name of background) {
      if (!names.has(name))
        throw new TypeError(`AuditLog: background sink '${name}' is not one of the sinks`);
    }
    if (sinks.every((s) => background.has(s.name))) {
      throw new TypeError('AuditLog: at least one sink must be written before emit resolves');
    }
    this.#backgroundFlushMs = opts.backgroundFlushMs ?? 200;
    this.#backgroundBatchMax = opts.backgroundBatchMax ?? 4000;
    if (!(this.#backgroundBatchMax >= 1))
      throw new TypeError('AuditLog: backgroundBatchMax must be at least 1');
    this.#backgroundMaxQueued = opts.backgroundMaxQueued ?? 10_000;
    if (!(this.#backgroundMaxQueued >= 1))
      throw new TypeError('AuditLog: backgroundMaxQueued must be at least 1');
    this.#memoryMaxBytes = opts.memoryRetainMaxBytes ?? 64 * 1024 * 1024;
    this.#journal = opts.sessionJournal ? new OpenSessionJournal(opts.sessionJournal) : undefined;
    if (!(this.#memoryMaxBytes >= 0)) throw new TypeError('AuditLog: memoryRetainMaxBytes must be >= 0');
    this.#states = sinks.map((sink) => {
      const spool = new Spool(opts.spoolDir, sink.name);
      spool.load();
      const st: SinkState = {
        sink,
        spool,
        failing: spool.pending > 0,
        chain: Promise.resolve(),
        batch: [],
        flushScheduled: false,
        timer: undefined,
        delayMs: this.#retryInitialMs,
        lastError: undefined,
        background: background.has(sink.name),
        queued: 0,
        memory: [],
        memoryBytes: 0,
        spoolBroken: false,
        lost: 0,
        lastSpoolError: undefined,
      };
      return st;
    });
    this.#chaining = this.#states.filter((st) => !st.background && isChaining(st.sink));
    this.#foreground = this.#states.filter((st) => !st.background && !isChaining(st.sink));
    this.#background = this.#states.filter((st) => st.background);
    // Export sinks raise their alarms (spool filling, full, dropped, rejected) as events in this log.
    for (const s of sinks) s.attach?.(this);
    for (const st of this.#states) {
      // A backlog from an earlier run is replayed right away; a fully replayed
      // spool whose removal was interrupted is simply removed.
      if (st.failing) this.#setTimer(st, 0);
      else st.spool.clear();
    }
  }

  async emit(input: AuditEventInput, opts: EmitOptions = {}): Promise<AuditEvent> {
    if (this.#closed) {
      throw new AuditUnavailableError('the audit log is closed', {
        hint: 'Emit events only between creating the AuditLog and closing it.',
      });
    }
    const e = this.#build(input);
    try {
      await this.#dispatch(e, opts.precondition === true);
    } catch (err) {
      // An end that waits in memory still ends the session (a start that failed opened none).
      if (!opts.precondition) this.#observe(e);
      throw err;
    }
    this.#observe(e);
    return e;
  }

  #observe(e: AuditEvent): void {
    if (!this.#journal) return;
    try {
      this.#journal.observe(e);
    } catch (err) {
      // The journal only serves the next start after a crash; the event itself is written.
      this.#publish({ kind: 'journal_failed', path: this.#journal.path, error: message(err) });
    }
  }

  /**
   * Ends the sessions an earlier process on this spool directory left open
   * (killed or crashed mid-session): one end event each (`session.end`,
   * `db.session.end`, `kube.exec.end`) with `reason`. `recorded` names the
   * sessions whose recordings were finalized. Returns how many it ended.
   */
  async closeOrphanedSessions(how: OrphanClose): Promise<number> {
    const j = this.#journal;
    if (!j) return 0;
    if (j.foreignOwner !== undefined) {
      this.#publish({
        kind: 'journal_failed',
        path: j.path,
        error: `process ${j.foreignOwner} still uses this spool directory; its sessions are left to it`,
      });
      return 0;
    }
    const ends = j.closeEvents(how, this.#clock());
    for (const end of ends) await this.emit(end);
    j.forget();
    return ends.length;
  }

  async record(input: AuditEventInput): Promise<void> {
    try {
      await this.emit(input);
    } catch (err) {
      // Kept in memory and written on recovery (or counted as lost past the
      // bound, which is recorded then); the caller's action already happened.
      this.#publish({ kind: 'record_failed', type: String(input?.type), error: message(err) });
    }
  }

  /**
   * False while an event cannot be made durable: a foreground sink and its
   * spool both failed (full or read-only disk) and events wait in memory.
   * New work must be refused then (`assertAvailable`); it turns true again
   * once the events are on disk.
   */
  available(): boolean {
    return (
      !this.#states.some((st) => !st.background && (st.spoolBroken || st.memory.length > 0)) &&
      this.#fullSink() === undefined
    );
  }

  /** An export sink whose spool is at its bound with policy `block` (it refuses new work too). */
  #fullSink(): AuditSink | undefined {
    return this.#states.find((st) => st.sink.available?.() === false)?.sink;
  }

  /** Each sink's `status()` (export sinks: state and spool depth), for `gatehouse status`. */
  sinkStatus(): AuditSinkStatus[] {
    return this.#states.flatMap((st) => (st.sink.status ? [st.sink.status()] : []));
  }

  unavailableReason(): { message: string; hint: string; sink?: string } {
    const full = this.#fullSink();
    if (full) {
      return {
        sink: full.name,
        message: `the audit sink '${full.name}' is full, so new sessions are refused`,
        hint: `ask an admin to bring the receiver of audit sink '${full.name}' back (gatehouse status shows its state); it resumes by itself`,
      };
    }
    return {
      message: 'the gateway cannot write its audit log, so new sessions are refused',
      hint: 'ask an admin to free disk space on the gateway; it resumes by itself',
    };
  }

  assertAvailable(): void {
    if (this.available()) return;
    const full = this.#fullSink();
    if (full) {
      throw new AuditUnavailableError(
        `${full.unavailableReason?.() ?? `the audit sink '${full.name}' is full`}; new sessions and actions are refused until it drains`,
        {
          hint: `Bring the receiver of audit sink '${full.name}' back (gatehouse status shows its state), or raise its max_spool_bytes; Gatehouse resumes by itself.`,
        },
      );
    }
    const st = this.#states.find((s) => !s.background && (s.spoolBroken || s.memory.length > 0));
    throw new AuditUnavailableError(
      `the audit log cannot write events (sink '${st?.sink.name}': ${st?.lastError ?? 'spool not writable'}); ` +
        'new sessions and actions are refused until it can',
      { hint: 'Free disk space in the data dir (or make it writable again); Gatehouse resumes by itself.' },
    );
  }

  /** Events waiting in each sink's spool or memory (0 for healthy sinks). */
  backlog(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const st of this.#states) out[st.sink.name] = st.spool.pending + st.memory.length;
    return out;
  }

  /** Newest first, through the index. */
  async search(q: AuditQuery = {}): Promise<AuditSearchResult> {
    if (!this.#index) {
      throw new AuditUnavailableError('this audit log has no index to search', {
        hint: 'Create the AuditLog with an index (e.g. SqliteAuditIndex) to search events.',
      });
    }
    // Read your writes: events still queued for a background index land first.
    const pending = this.#states.filter((st) => st.background && st.sink === this.#index);
    for (const st of pending) this.#flush(st);
    await Promise.allSettled(pending.map((st) => st.chain));
    return this.#index.search(q);
  }

  /** Every matching event, newest first, page by page. */
  async *iterate(q: Omit<AuditQuery, 'cursor'> = {}): AsyncIterable<AuditEvent> {
    let cursor: string | undefined;
    do {
      const page = await this.search(cursor === undefined ? q : { ...q, cursor });
      yield* page.events;
      cursor = page.next_cursor;
    } while (cursor !== undefined);
  }

  /**
   * Replays every backlog now instead of waiting for the retry timer.
   * Resolves when each spool is empty or its sink failed again.
   */
  async retryNow(): Promise<void> {
    await Promise.all(
      this.#states
        .filter((st) => st.failing)
        .map(async (st) => {
          this.#clearTimer(st);
          const status = await this.#replayAll(st);
          if (status === 'failed') this.#scheduleRetry(st);
        }),
    );
  }

  /**
   * Waits for deliveries in flight, makes one last attempt at each backlog
   * (what stays in a spool is replayed by the next AuditLog on that spool
   * directory), stops the retry loops and closes every sink.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    for (const st of this.#states) this.#clearTimer(st);
    await this.#drain();
    for (const st of this.#states) if (st.failing) await this.#replayAll(st);
    for (const st of this.#states) {
      if (st.memory.length > 0 || st.lost > 0) {
        // Nowhere left to put them: say so loudly, it is the one loss we cannot prevent.
        this.#publish({
          kind: 'dropped',
          sink: st.sink.name,
          lost: st.memory.length + st.lost,
          error: `closed while the events could not be written (${st.lastError ?? 'spool not writable'})`,
        });
      }
    }
    for (const st of this.#states) this.#clearTimer(st);
    this.#journal?.close();
    const errors: unknown[] = [];
    for (const st of this.#states) {
      try {
        await st.sink.close?.();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'closing audit sinks failed');
  }

  /** Waits until no sink has queued work, including work queued while waiting. */
  async #drain(): Promise<void> {
    for (;;) {
      for (const st of this.#states) this.#flush(st);
      const chains = this.#states.map((st) => st.chain);
      await Promise.allSettled(chains);
      if (this.#states.every((st, i) => st.chain === chains[i] && st.batch.length === 0)) return;
    }
  }

  #build(input: AuditEventInput): AuditEvent {
    if (typeof input !== 'object' || input === null) {
      throw new AuditValidationError('an audit event must be an object');
    }
    const type = (input as { type?: unknown }).type;
    if (typeof type !== 'string' || !Object.hasOwn(EVENT_CODES, type)) {
      throw new AuditValidationError(`unknown audit event type ${JSON.stringify(type)}`, {
        hint: 'Add the type to the catalogue in @gatehouse/audit events.ts before emitting it.',
      });
    }
    // The log owns these fields; an input that carries them does not get to choose. (A copy
    // loop rather than an object rest: this runs for every event, and the rest is twice as slow.)
    const e: Record<string, unknown> = {
      id: this.#idGen(),
      time: this.#clock().toISOString(),
      type,
      code: codeFor(input),
      cluster: this.cluster,
    };
    const fields = input as unknown as Record<string, unknown>;
    for (const k of Object.keys(fields)) if (!LOG_OWNED.has(k)) e[k] = fields[k];
    return e as unknown as AuditEvent;
  }

  async #dispatch(e: AuditEvent, precondition: boolean): Promise<void> {
    let line: string;
    try {
      line = `${JSON.stringify(e)}\n`;
    } catch (err) {
      throw new AuditValidationError(`audit event ${e.type} cannot be serialized: ${message(err)}`, {
        cause: err,
      });
    }
    // The chained record goes first, so every other sink gets the event with
    // its `chain` link, in the very bytes the JSON-lines file holds (decision 0029).
    // (The usual case is one chained sink and no other foreground one: no
    // arrays or extra promises per event beyond the one the batch settles.)
    const results: PromiseSettledResult<void>[] =
      this.#chaining.length === 1
        ? [await settle(this.#batched(this.#chaining[0] as SinkState, e, line, precondition))]
        : await Promise.allSettled(this.#chaining.map((st) => this.#batched(st, e, line, precondition)));
    if (e.chain) line = withChain(line, e.chain);
    let behind: Promise<void>[] | undefined;
    for (const st of this.#background) {
      // Nothing to await: a failure is spooled and retried like any sink's, and
      // one that cannot even be spooled is reported (the foreground record has it).
      // Unless the sink is this far behind: then the emitter waits for it too.
      if (st.queued >= this.#backgroundMaxQueued) {
        behind ??= [];
        behind.push(
          this.#batched(st, e, line, precondition).catch((err: unknown) => this.#backgroundFailed(st, err)),
        );
      } else {
        st.queued++;
        this.#push(st, {
          e,
          line,
          precondition,
          resolve: noop,
          reject: (err) => this.#backgroundFailed(st, err),
        });
      }
    }
    if (this.#foreground.length > 0) {
      for (const r of await Promise.allSettled(
        this.#foreground.map((st) => this.#batched(st, e, line, precondition)),
      ))
        results.push(r);
    }
    if (behind) await Promise.all(behind);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    const first = failed[0];
    if (first) {
      if (failed.length === 1) throw first.reason;
      throw new AuditUnavailableError(failed.map((r) => message(r.reason)).join('; '), {
        cause: new AggregateError(
          failed.map((r) => r.reason),
          'several audit sinks failed',
        ),
      });
    }
  }

  #enqueue<T>(st: SinkState, job: () => T | Promise<T>): Promise<T> {
    const p = st.chain.then(job);
    // The chain only orders jobs; each job's outcome reaches its own caller through `p`.
    st.chain = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  /**
   * Group commit: every event emitted during one turn of the event loop
   * reaches each sink in one call (JSONL: one write; SQLite: one
   * transaction), and each emit resolves once its batch is written or
   * spooled. Under load (many sessions auditing queries) this turns one
   * write per event into one per tick, without delaying a lone event by
   * more than that tick.
   */
  #batched(st: SinkState, e: AuditEvent, line: string, precondition: boolean): Promise<void> {
    st.queued++;
    return new Promise<void>((resolve, reject) => {
      this.#push(st, { e, line, precondition, resolve, reject });
    });
  }

  #push(st: SinkState, item: Pending): void {
    st.batch.push(item);
    if (st.background) {
      // A full batch goes now; the timer then finds an empty or a new, smaller one.
      if (st.batch.length >= this.#backgroundBatchMax) this.#flush(st);
      else if (!st.flushScheduled) {
        st.flushScheduled = true;
        setTimeout(() => this.#flush(st), this.#backgroundFlushMs).unref();
      }
      return;
    }
    if (st.flushScheduled) return;
    st.flushScheduled = true;
    setImmediate(() => this.#flush(st));
  }

  #backgroundFailed(st: SinkState, err: unknown): void {
    this.#publish({ kind: 'sink_failed', sink: st.sink.name, error: message(err) });
  }

  #flush(st: SinkState): void {
    st.flushScheduled = false;
    if (st.batch.length === 0) return;
    const items = st.batch;
    st.batch = [];
    void this.#enqueue(st, () => this.#deliverBatch(st, items));
  }

  async #deliverBatch(st: SinkState, items: Pending[]): Promise<void> {
    let spoolFrom = items.length;
    let sinkError: unknown;
    if (st.failing) spoolFrom = 0;
    else if (isBatchSink(st.sink)) {
      try {
        await st.sink.writeBatch(
          items.map((i) => i.e),
          items.map((i) => i.line),
        );
      } catch (err) {
        // All or nothing from the sink's side; a replay may repeat some (sinks are at-least-once).
        spoolFrom = 0;
        sinkError = err;
      }
    } else {
      for (let i = 0; i < items.length; i++) {
        try {
          await st.sink.write(items[i]!.e);
        } catch (err) {
          spoolFrom = i;
          sinkError = err;
          break;
        }
      }
    }
    st.queued -= items.length;
    for (let i = 0; i < spoolFrom; i++) items[i]!.resolve();
    if (spoolFrom < items.length) this.#keep(st, items.slice(spoolFrom), sinkError);
    if (sinkError !== undefined) this.#startFailing(st, sinkError);
  }

  /**
   * Events the sink did not take: to the spool (durable: emit resolves), or,
   * when the spool cannot be written either, kept in memory within the bound
   * (not durable: emit rejects, so the caller refuses what it was about to
   * do; the record itself is written on recovery). Memory goes to the spool
   * first, so the order holds.
   */
  #keep(st: SinkState, items: Pending[], sinkError: unknown): void {
    let spoolError: unknown;
    if (this.#memoryToSpool(st)) {
      try {
        st.spool.append(items.map((i) => i.line).join(''), items.length);
        st.spoolBroken = false;
        for (const item of items) item.resolve();
        return;
      } catch (err) {
        spoolError = err;
        this.#spoolFailed(st, err);
      }
    } else spoolError = st.lastSpoolError;
    const why = sinkError === undefined ? 'has a backlog' : `failed (${message(sinkError)})`;
    const error = new AuditUnavailableError(
      `audit sink '${st.sink.name}' ${why} and its spool ${st.spool.path} cannot be written: ${message(spoolError)}`,
      { cause: spoolError },
    );
    for (const item of items) {
      if (!item.precondition) this.#retain(st, item.line);
      item.reject(error);
    }
    // Retry soon: the events in memory wait for the disk, and new work is refused meanwhile.
    if (!this.#closed && st.timer === undefined) this.#setTimer(st, Math.min(st.delayMs, RETAIN_RETRY_MS));
  }

  /** Moves events held in memory to the spool; true when memory is empty afterwards. */
  #memoryToSpool(st: SinkState): boolean {
    if (st.memory.length === 0) return true;
    try {
      st.spool.append(st.memory.join(''), st.memory.length);
    } catch (err) {
      this.#spoolFailed(st, err);
      return false;
    }
    st.memory = [];
    st.memoryBytes = 0;
    st.spoolBroken = false;
    return true;
  }

  #spoolFailed(st: SinkState, err: unknown): void {
    st.lastSpoolError = err;
    if (!st.spoolBroken) {
      st.spoolBroken = true;
      st.failing = true;
    }
  }

  #retain(st: SinkState, line: string): void {
    if (st.memoryBytes + line.length > this.#memoryMaxBytes) {
      st.lost++;
      this.#publish({
        kind: 'dropped',
        sink: st.sink.name,
        lost: st.lost,
        error: `more than ${this.#memoryMaxBytes} bytes of events are waiting in memory`,
      });
      return;
    }
    st.memory.push(line);
    st.memoryBytes += line.length;
    if (st.memory.length === 1) {
      this.#publish({
        kind: 'retained',
        sink: st.sink.name,
        events: 1,
        bytes: st.memoryBytes,
        error: message(st.lastSpoolError),
      });
    }
  }

  #startFailing(st: SinkState, err: unknown): void {
    st.failing = true;
    st.lastError = message(err);
    st.delayMs = this.#retryInitialMs;
    this.#publish({ kind: 'sink_failed', sink: st.sink.name, error: st.lastError });
    this.#scheduleRetry(st);
    // Not awaited: this runs inside the failing sink's queue, and the event
    // queues behind it there (it lands in that sink's spool too, so every
    // sink keeps the same record).
    this.#dispatchInternal({
      type: 'audit.backlog',
      user: 'system',
      sink: st.sink.name,
      backlog: st.spool.pending,
      error: st.lastError,
      message: `audit sink '${st.sink.name}' is failing; events are spooled to disk and retried`,
    }).catch((e2: unknown) => {
      // Nobody awaits this event; the failure is reported on the diagnostics
      // channel, and the next emit meets the same broken spool and rejects.
      this.#publish({ kind: 'backlog_event_failed', sink: st.sink.name, error: message(e2) });
    });
  }

  async #dispatchInternal(input: AuditEventInput): Promise<void> {
    await this.#dispatch(this.#build(input), false);
  }

  #scheduleRetry(st: SinkState): void {
    const delay = st.delayMs;
    st.delayMs = Math.min(st.delayMs * 2, this.#retryMaxMs);
    // Events in memory (and refused work) wait for the disk: try it often, it is one write.
    const degraded = st.spoolBroken || st.memory.length > 0;
    this.#setTimer(st, degraded ? Math.min(delay, RETAIN_RETRY_MS) : delay);
  }

  #setTimer(st: SinkState, delay: number): void {
    if (this.#closed) return;
    this.#clearTimer(st);
    const t = setTimeout(() => {
      st.timer = undefined;
      void this.#replayAll(st).then((status) => {
        if (status === 'failed') this.#scheduleRetry(st);
      });
    }, delay);
    // The retry loop must never keep a process alive on its own.
    t.unref();
    st.timer = t;
  }

  #clearTimer(st: SinkState): void {
    if (st.timer) {
      clearTimeout(st.timer);
      st.timer = undefined;
    }
  }

  async #replayAll(st: SinkState): Promise<ReplayStatus> {
    for (;;) {
      // One batch per queued job, so fresh emits (spooled behind) are not held up by a long replay.
      const status = await this.#enqueue(st, () => this.#replayBatch(st));
      if (status !== 'more') return status;
    }
  }

  async #replayBatch(st: SinkState): Promise<ReplayStatus> {
    if (!st.failing) return 'done';
    // What waits in memory goes to the spool first: durable as soon as the disk takes it, and in order.
    this.#memoryToSpool(st);
    try {
      const { lines, eof } = st.spool.read(REPLAY_BATCH);
      let end = st.spool.offset;
      let delivered = 0;
      let failure: unknown;
      for (const line of lines) {
        let e: AuditEvent | undefined;
        try {
          e = JSON.parse(line.text) as AuditEvent;
        } catch {
          // A torn line from a crash mid-append: keep it for an operator, report it, move on.
          const file = st.spool.reject(line.text);
          this.#publish({ kind: 'spool_line_rejected', sink: st.sink.name, file });
        }
        if (e !== undefined) {
          try {
            await st.sink.write(e);
          } catch (err) {
            failure = err;
            break;
          }
        }
        end = line.end;
        delivered++;
      }
      if (delivered > 0) st.spool.commit(end, delivered);
      if (failure !== undefined) {
        st.lastError = message(failure);
        this.#publish({
          kind: 'replay_failed',
          sink: st.sink.name,
          error: st.lastError,
          backlog: st.spool.pending,
        });
        return 'failed';
      }
      if (!eof) return 'more';
      // The spool is replayed; what memory still holds (the spool could not
      // take it) goes to the sink directly, oldest first.
      while (st.memory.length > 0) {
        const line = st.memory[0]!;
        try {
          await st.sink.write(JSON.parse(line) as AuditEvent);
        } catch (err) {
          st.lastError = message(err);
          this.#publish({
            kind: 'replay_failed',
            sink: st.sink.name,
            error: st.lastError,
            backlog: st.spool.pending + st.memory.length,
          });
          return 'failed';
        }
        st.memory.shift();
        st.memoryBytes -= line.length;
      }
      st.spool.clear();
      st.failing = false;
      st.spoolBroken = false;
      st.lastError = undefined;
      st.delayMs = this.#retryInitialMs;
      this.#publish({ kind: 'sink_recovered', sink: st.sink.name });
      if (st.lost > 0) this.#recordLoss(st);
      return 'done';
    } catch (err) {
      // The spool itself could not be read or updated; the events stay on disk for the next try.
      st.lastError = message(err);
      this.#publish({
        kind: 'replay_failed',
        sink: st.sink.name,
        error: st.lastError,
        backlog: st.spool.pending,
      });
      return 'failed';
    }
  }

  /** The log works again: what did not fit in memory while it did not is recorded, with its count. */
  #recordLoss(st: SinkState): void {
    const lost = st.lost;
    st.lost = 0;
    // Not awaited: this runs inside the sink's queue (as audit.backlog does).
    this.#dispatchInternal({
      type: 'audit.dropped',
      user: 'system',
      sink: st.sink.name,
      lost,
      message: `${lost} audit events for sink '${st.sink.name}' were lost: neither the sink nor its spool could be written and more than ${this.#memoryMaxBytes} bytes were already waiting in memory`,
    }).catch((err: unknown) => {
      st.lost += lost;
      this.#publish({ kind: 'dropped', sink: st.sink.name, lost: st.lost, error: message(err) });
    });
  }

  #publish(d: AuditDiagnostic): void {
    if (this.#diag.hasSubscribers) this.#diag.publish(d);
  }
}
