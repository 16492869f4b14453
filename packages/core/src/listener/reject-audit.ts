import type { AuditEmitter, ListenerRejectReason } from '@gatehouse/audit';
import type { ConnectionInfo } from './routes.js';

/**
 * listener.reject events without the flood (docs/decisions/0018-listener-admission.md): the first
 * refusal of a kind (port, source block, reason) is audited at once with all
 * its details; the ones after it are counted, and each window ends with one
 * listener.reject.summary per kind that was counted. Every refusal is in
 * exactly one event: one for itself, or a summary's `count`.
 */

export interface RejectKind {
  /** The local port the client reached (the PROXY header's destination when proxied). */
  port: number;
  /** The source block (listener per_source_netblock), or the address itself if it is none. */
  source: string;
  reason: ListenerRejectReason;
}

export interface RejectSummary extends RejectKind {
  /** `source` is '*' when the table was full: refusals of sources past max_sources, merged. */
  count: number;
  first: number;
  last: number;
  /** The local address of the first counted refusal. */
  local: string;
  /** The last counted refusal's message. */
  error: string;
}

interface Entry extends RejectKind {
  count: number;
  first: number;
  last: number;
  local: string;
  error: string;
  lastSeen: number;
}

/** The pure part: which refusal gets its own event, and what each window's summaries say. */
export class RejectAggregator {
  readonly #entries = new Map<string, Entry>();
  /** Entries for real sources; the '*' overflow entries (one per port and reason) are not counted. */
  #sources = 0;
  readonly #windowMs: number;
  readonly #maxSources: number;

  constructor(opts: { windowMs: number; maxSources: number }) {
    this.#windowMs = opts.windowMs;
    this.#maxSources = opts.maxSources;
  }

  /**
   * Records one refusal. `emit: true`: audit it now as its own event, with
   * `source` (which is '*' when the table is full).
   */
  note(
    k: RejectKind,
    detail: { local: string; error: string },
    now: number,
  ): { emit: boolean; source: string } {
    let key = `${k.port}|${k.source}|${k.reason}`;
    let e = this.#entries.get(key);
    let source = k.source;
    if (!e && this.#sources >= this.#maxSources) {
      source = '*';
      key = `${k.port}|*|${k.reason}`;
      e = this.#entries.get(key);
    }
    if (!e) {
      this.#entries.set(key, {
        ...k,
        source,
        count: 0,
        first: 0,
        last: 0,
        local: '',
        error: '',
        lastSeen: now,
      });
      if (source !== '*') this.#sources++;
      return { emit: true, source };
    }
    e.lastSeen = now;
    if (e.count === 0) {
      e.first = now;
      e.local = detail.local;
    }
    e.count++;
    e.last = now;
    e.error = detail.error;
    return { emit: false, source };
  }

  /**
   * The end of a window: a summary for every kind counted since the last
   * one. A kind quiet for a whole window is forgotten (its next refusal is
   * audited at once again); `all` (closing) keeps nothing.
   */
  drain(now: number, all = false): RejectSummary[] {
    const out: RejectSummary[] = [];
    for (const [key, e] of this.#entries) {
      if (e.count > 0) {
        const { lastSeen: _, ...summary } = e;
        out.push(summary);
        e.count = 0;
      }
      if (all || now - e.lastSeen >= this.#windowMs) {
        this.#entries.delete(key);
        if (e.source !== '*') this.#sources--;
      }
    }
    return out;
  }

  /** Kinds held (memory: at most max_sources plus one '*' entry per port and reason). */
  get size(): number {
    return this.#entries.size;
  }
}

/** Drives a RejectAggregator: emits the events and ends each window on a timer. */
export class RejectAuditor {
  readonly #agg: RejectAggregator;
  readonly #audit: AuditEmitter;
  readonly #now: () => number;
  readonly #timer: NodeJS.Timeout;
  readonly #inflight = new Set<Promise<unknown>>();
  /** After close() nothing drains the table again: each refusal is then its own event. */
  #closed = false;

  constructor(deps: {
    audit: AuditEmitter;
    now: () => number;
    windowMs: number;
    maxSources: number;
  }) {
    this.#agg = new RejectAggregator(deps);
    this.#audit = deps.audit;
    this.#now = deps.now;
    this.#timer = setInterval(() => this.#summarise(false), deps.windowMs);
    // The window timer alone must not keep a process (or a test run) alive.
    this.#timer.unref();
  }

  reject(info: ConnectionInfo, source: string, reason: ListenerRejectReason, error: string): void {
    const local = `${info.localAddr}:${info.localPort}`;
    const r = this.#closed
      ? { emit: true, source }
      : this.#agg.note({ port: info.localPort, source, reason }, { local, error }, this.#now());
    if (!r.emit) return;
    this.#emit({
      type: 'listener.reject',
      reason,
      error,
      source: r.source,
      user: 'system',
      addr: { remote: `${info.remoteAddr}:${info.remotePort}`, local },
    });
  }

  #summarise(all: boolean): void {
    for (const s of this.#agg.drain(this.#now(), all)) {
      this.#emit({
        type: 'listener.reject.summary',
        reason: s.reason,
        count: s.count,
        source: s.source,
        first_time: new Date(s.first).toISOString(),
        last_time: new Date(s.last).toISOString(),
        error: s.error,
        user: 'system',
        addr: { local: s.local },
      });
    }
  }

  /** A refusal already happened: record() keeps the event until the disk takes it, and never rejects. */
  #emit(e: Parameters<AuditEmitter['record']>[0]): void {
    const p = this.#audit.record(e).finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
  }

  /** Writes what is counted and waits for every event still on its way. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#summarise(true);
    await Promise.all([...this.#inflight]);
  }
}
