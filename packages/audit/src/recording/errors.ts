/**
 * Errors of the recording store. They carry codes from the shared catalogue
 * (docs/errors.md) so core's API maps them to the right HTTP status.
 */
export type RecordingErrorCode =
  | 'GH_ERR_NOT_FOUND'
  | 'GH_ERR_VALIDATION'
  | 'GH_ERR_ALREADY_EXISTS'
  | 'GH_ERR_AUDIT_UNAVAILABLE'
  /** Made on another gateway that has not uploaded it to the shared store yet. */
  | 'GH_ERR_RECORDING_NOT_UPLOADED';

const STATUS: Record<RecordingErrorCode, number> = {
  GH_ERR_NOT_FOUND: 404,
  GH_ERR_VALIDATION: 400,
  GH_ERR_ALREADY_EXISTS: 409,
  GH_ERR_AUDIT_UNAVAILABLE: 503,
  GH_ERR_RECORDING_NOT_UPLOADED: 503,
};

export class RecordingError extends Error {
  override name = 'RecordingError';
  readonly code: RecordingErrorCode;
  readonly status: number;
  readonly hint: string | undefined;

  constructor(code: RecordingErrorCode, message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = STATUS[code];
    this.hint = opts.hint;
  }
}

const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function isSessionId(id: unknown): id is string {
  return typeof id === 'string' && SESSION_ID.test(id) && !id.includes('..');
}

/** Session ids name directories: only a safe alphabet, never `..` or a separator. */
export function validateSessionId(id: unknown): string {
  if (!isSessionId(id)) {
    throw new RecordingError('GH_ERR_VALIDATION', `invalid session id ${JSON.stringify(id)}`, {
      hint: 'session ids are letters, digits, ".", "_" and "-" (see gatehouse recordings ls)',
    });
  }
  return id;
}

export function notFound(id: string): RecordingError {
  return new RecordingError('GH_ERR_NOT_FOUND', `no recording for session ${id}`, {
    hint: 'list recordings with gatehouse recordings ls',
  });
}
