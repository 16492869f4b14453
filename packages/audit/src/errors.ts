/**
 * Errors thrown by the audit package. They carry the same stable codes as
 * `GatehouseError` in @gatehouse/core, but are defined here because core
 * depends on audit (not the other way round). Callers map them by `code`.
 */
export type AuditErrorCode = 'GH_ERR_AUDIT_UNAVAILABLE' | 'GH_ERR_VALIDATION';

const STATUS: Record<AuditErrorCode, number> = {
  GH_ERR_AUDIT_UNAVAILABLE: 503,
  GH_ERR_VALIDATION: 400,
};

export interface AuditErrorOptions {
  /** What the user should do next. */
  hint?: string;
  cause?: unknown;
}

export class AuditError extends Error {
  override name = 'AuditError';
  readonly code: AuditErrorCode;
  /** The HTTP status the API should answer with. */
  readonly status: number;
  readonly hint: string | undefined;

  constructor(code: AuditErrorCode, message: string, opts: AuditErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = STATUS[code];
    this.hint = opts.hint;
  }
}

/**
 * An event could be neither written nor spooled: the action that produced it
 * must fail (fail closed), because it would otherwise go unrecorded.
 */
export class AuditUnavailableError extends AuditError {
  override name = 'AuditUnavailableError';
  declare readonly code: 'GH_ERR_AUDIT_UNAVAILABLE';
  constructor(message: string, opts: AuditErrorOptions = {}) {
    super('GH_ERR_AUDIT_UNAVAILABLE', message, {
      hint: 'Check that the audit spool directory and the audit sinks are writable, then retry.',
      ...opts,
    });
  }
}

/** A malformed event or query (unknown type, bad date, bad cursor, bad limit). */
export class AuditValidationError extends AuditError {
  override name = 'AuditValidationError';
  declare readonly code: 'GH_ERR_VALIDATION';
  constructor(message: string, opts: AuditErrorOptions = {}) {
    super('GH_ERR_VALIDATION', message, opts);
  }
}

/** What an error says, for a record that explains a failure. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
