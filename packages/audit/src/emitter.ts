import type { AuditEvent, AuditEventInput } from './events.js';

/** What emitters depend on: the narrowest view of the AuditLog. */
export interface AuditEmitter {
  /**
   * Resolves once every sink accepted the event or durably spooled it for
   * retry. Rejects (GH_ERR_AUDIT_UNAVAILABLE) only when the event could not
   * be kept anywhere: callers must then fail the action, never proceed.
   */
  emit(e: AuditEventInput): Promise<AuditEvent>;
}
