import type { AuditEmitter } from '../emitter.js';
import type { AuditEvent } from '../events.js';
import type { AuditQuery, AuditSearchResult } from '../query.js';

/**
 * Where events go. `write` either accepts the event (returns or resolves) or
 * throws/rejects; the AuditLog then spools the event and retries later, in
 * order. A sink must tolerate seeing an event again after a crash during a
 * replay (at-least-once); the SQLite index ignores duplicate ids.
 */
export interface AuditSink {
  /** Unique within one AuditLog; names the spool file, so letters, digits, '.', '_' and '-' only. */
  name: string;
  write(e: AuditEvent): void | Promise<void>;
  close?(): Promise<void>;
  /** Called once by the AuditLog the sink is given to: a sink raises its alarms as events in that log. */
  attach?(log: AuditEmitter): void;
  /**
   * False while the sink cannot take more events without breaking its
   * guarantee (an export sink whose spool is full, policy `block`): the
   * gateway refuses new sessions then, as on a full disk.
   */
  available?(): boolean;
  /** Why `available()` is false, in words for the refused user. */
  unavailableReason?(): string;
  /** State and queue depth, for `gatehouse status`. */
  status?(): AuditSinkStatus;
}

/** A sink that can also answer queries (newest first, keyset pagination). */
export interface AuditIndex extends AuditSink {
  search(q: AuditQuery): Promise<AuditSearchResult>;
}

/** What `gatehouse status` shows for an export sink (see ExportSink). */
export interface AuditSinkStatus {
  name: string;
  type: string;
  /** ok: delivering; failing: the receiver cannot be reached (events are spooled); full: the spool is at its bound. */
  state: 'ok' | 'failing' | 'full';
  /** Events in the spool, not yet delivered. */
  queued: number;
  queued_bytes: number;
  max_bytes: number;
  on_full: 'block' | 'drop_oldest';
  /** Since this process started. */
  delivered: number;
  dropped: number;
  rejected: number;
  error?: string;
}
