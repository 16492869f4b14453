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
}

/** A sink that can also answer queries (newest first, keyset pagination). */
export interface AuditIndex extends AuditSink {
  search(q: AuditQuery): Promise<AuditSearchResult>;
}
