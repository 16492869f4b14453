/**
 * Every failure Gatehouse reports has a stable code. Codes are never reused
 * once retired; docs/errors.md lists them all.
 *
 * `status` is the HTTP status the API answers with; adapters map the code to
 * their own wire format (SQLSTATE, MySQL errno, SSH disconnect, k8s Status).
 */
export const ErrorCodes = {
  GH_ERR_BAD_REQUEST: 400,
  GH_ERR_VALIDATION: 400,
  GH_ERR_ROLE_INVALID: 400,
  GH_ERR_CONFIG_INVALID: 400,
  GH_ERR_UNAUTHENTICATED: 401,
  GH_ERR_BAD_CREDENTIALS: 401,
  GH_ERR_SECOND_FACTOR_REQUIRED: 401,
  GH_ERR_SECOND_FACTOR_INVALID: 401,
  GH_ERR_SECOND_FACTOR_NOT_ENROLLED: 401,
  GH_ERR_WEBAUTHN_INVALID: 401,
  GH_ERR_WEBAUTHN_CHALLENGE_INVALID: 401,
  GH_ERR_WEBAUTHN_COUNTER: 401,
  /** WebAuthn needs a DNS name in public_addr (an IP address cannot be an RP id). */
  GH_ERR_WEBAUTHN_UNAVAILABLE: 503,
  GH_ERR_MFA_LAST_FACTOR: 409,
  GH_ERR_TOKEN_INVALID: 401,
  GH_ERR_CERT_INVALID: 401,
  GH_ERR_CERT_EXPIRED: 401,
  GH_ERR_SSO_STATE_INVALID: 401,
  GH_ERR_SSO_TOKEN_INVALID: 401,
  GH_ERR_SSO_ASSERTION_INVALID: 401,
  GH_ERR_SSO_IDP_ERROR: 401,
  GH_ERR_SSO_CODE_INVALID: 401,
  GH_ERR_SSO_NO_ROLES: 403,
  GH_ERR_SSO_USER_CONFLICT: 409,
  GH_ERR_SSO_IDP_UNAVAILABLE: 502,
  GH_ERR_ACCESS_DENIED: 403,
  /** The roles require a per-session MFA check (require_session_mfa) and the login certificate alone was presented. */
  GH_ERR_SESSION_MFA_REQUIRED: 403,
  GH_ERR_USER_LOCKED: 403,
  GH_ERR_CSRF: 403,
  GH_ERR_NOT_FOUND: 404,
  GH_ERR_ALREADY_EXISTS: 409,
  GH_ERR_CONFLICT: 409,
  /** An access request that can take no more reviews (expired, denied, dropped, or already approved). */
  GH_ERR_ACCESS_REQUEST_CLOSED: 409,
  GH_ERR_REQUEST_TIMEOUT: 408,
  GH_ERR_PAYLOAD_TOO_LARGE: 413,
  GH_ERR_LOGIN_BACKOFF: 429,
  GH_ERR_RATE_LIMITED: 429,
  GH_ERR_INTERNAL: 500,
  GH_ERR_BACKEND_UNAVAILABLE: 503,
  GH_ERR_AUDIT_UNAVAILABLE: 503,
  /** A recording made on another gateway that it has not uploaded to the shared store yet. */
  GH_ERR_RECORDING_NOT_UPLOADED: 503,
  GH_ERR_UPSTREAM_UNAVAILABLE: 502,
  /** Another gateway of the cluster did not answer on the internal channel (decision 0039-gateway-peers). */
  GH_ERR_PEER_UNAVAILABLE: 502,
  /** A listener could not be opened (address in use, no permission): never an HTTP answer. */
  GH_ERR_LISTEN_FAILED: 500,
  /** The data dir was written by a newer Gatehouse (its schema version is higher): never an HTTP answer. */
  GH_ERR_DATA_DIR_NEWER: 500,
  /** A backup file that is not whole, not ours, sealed with another passphrase, or of another cluster. */
  GH_ERR_BACKUP_INVALID: 400,
  /** A CA rotation step that does not follow from the CA's current phase (started twice, rollback after standby). */
  GH_ERR_CA_ROTATION: 409,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface GatehouseErrorOptions {
  /** What the user should do next, shown by the CLI and in problem JSON. */
  hint?: string;
  cause?: unknown;
  /** Extra machine-readable fields for problem JSON (never secrets). */
  details?: Record<string, unknown>;
}

export class GatehouseError extends Error {
  override name = 'GatehouseError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, opts: GatehouseErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = ErrorCodes[code];
    this.hint = opts.hint;
    this.details = opts.details;
  }

  /** RFC 9457 problem JSON. */
  toProblem(): Record<string, unknown> {
    return {
      type: `https://gatehouse.dev/docs/errors#${this.code}`,
      title: this.message,
      status: this.status,
      code: this.code,
      ...(this.hint ? { hint: this.hint } : {}),
      ...(this.details ?? {}),
    };
  }
}

export function isGatehouseError(e: unknown, code?: ErrorCode): e is GatehouseError {
  return e instanceof GatehouseError && (code === undefined || e.code === code);
}

/**
 * Errors from packages core does not own (e.g. @gatehouse/audit) carry the
 * same stable `code` strings; this keeps their code and hint instead of
 * turning them into internal errors.
 */
export function toGatehouseError(err: unknown): GatehouseError | undefined {
  if (err instanceof GatehouseError) return err;
  if (
    err instanceof Error &&
    'code' in err &&
    typeof err.code === 'string' &&
    Object.hasOwn(ErrorCodes, err.code)
  ) {
    const hint = 'hint' in err && typeof err.hint === 'string' ? err.hint : undefined;
    return new GatehouseError(err.code as ErrorCode, err.message, { cause: err, ...(hint ? { hint } : {}) });
  }
  return undefined;
}
