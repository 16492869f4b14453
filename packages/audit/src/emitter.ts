import type { AuditEvent, AuditEventInput } from './events.js';

/** How `emit` treats an event it cannot make durable now (see AuditLog). */
export interface EmitOptions {
  /**
   * The event announces an action that only happens if the event is written
   * (a session starts, a statement runs): if it cannot be written now, it is
   * dropped rather than written later, and the caller refuses the action.
   */
  precondition?: boolean;
}

/** What emitters depend on: the narrowest view of the AuditLog. */
export interface AuditEmitter {
  /**
   * Resolves once every sink accepted the event or durably spooled it for
   * retry. Rejects (GH_ERR_AUDIT_UNAVAILABLE) when it could not be made
   * durable: callers must then fail the action, never proceed. The event is
   * not lost: it waits in memory (within a bound) and is written once the
   * disk takes it again, unless it is a `precondition`.
   */
  emit(e: AuditEventInput, opts?: EmitOptions): Promise<AuditEvent>;
  /**
   * Records what already happened (an end, a refusal, a transfer): never
   * rejects. An event that cannot be made durable now is kept and written on
   * recovery, as with `emit`; the failure is reported on the diagnostics
   * channel.
   */
  record(e: AuditEventInput): Promise<void>;
  /**
   * False while events cannot be made durable (full or read-only disk): new
   * work must be refused until it is true again.
   */
  available(): boolean;
  /**
   * While `available()` is false: why, for the refused user, e.g. that an
   * export sink's spool is full rather than the disk.
   */
  unavailableReason?(): {
    message: string;
    hint: string;
    /** Set when the cause is an export sink whose spool is full (not the disk). */
    sink?: string;
  };
}
