import { dbDenialField, GatehouseError, type TlsRefused } from '@gatehouse/core';
import type { PgErrorFields } from './wire/backend.js';
import type { PgWireError } from './wire/errors.js';

/** SQLSTATEs the gateway answers with. */
export const SQLSTATE = {
  invalidAuthorization: '28000',
  invalidCatalogName: '3D000',
  connectionFailure: '08006',
  protocolViolation: '08P01',
  adminShutdown: '57P01',
  systemError: '58000',
  featureNotSupported: '0A000',
  internal: 'XX000',
} as const;

/** Plaintext startups get this, so users know what to change in their connection string. */
export function tlsRequired(): PgErrorFields {
  return {
    severity: 'FATAL',
    code: SQLSTATE.invalidAuthorization,
    message: 'Gatehouse accepts PostgreSQL connections over TLS only',
    hint: 'connect with sslmode=verify-full and the files from `gatehouse db login NAME` (psql "service=NAME")',
  };
}

/**
 * A client certificate core refused right after the TLS handshake (expired,
 * or not from this cluster's user CA), in psql's terms: without it, psql
 * only says "server closed the connection unexpectedly".
 */
export function certificateRefused(refusal: TlsRefused): PgErrorFields {
  const cause = refusal.cause;
  if (cause instanceof GatehouseError && cause.code === 'GH_ERR_CERT_EXPIRED') {
    return {
      severity: 'FATAL',
      code: SQLSTATE.invalidAuthorization,
      // Core's words: "client certificate expired at <time>".
      message: `Gatehouse: ${cause.message}: run \`gatehouse db login NAME\` for a new one`,
      hint: 'if your Gatehouse login has expired too, run `gatehouse login` first; then reconnect',
    };
  }
  return {
    severity: 'FATAL',
    code: SQLSTATE.invalidAuthorization,
    message: `Gatehouse: ${refusal.message}`,
    hint: 'run `gatehouse login`, then `gatehouse db login NAME`, and connect with the files it writes',
  };
}

/**
 * A refusal from core (DbAccess.authorize) in psql's terms. Core decides and
 * words the reason (which role rule refused); this only picks the SQLSTATE.
 */
export function denialToPg(err: unknown): PgErrorFields {
  if (!(err instanceof GatehouseError)) return internalError(err);
  const field = dbDenialField(err);
  let code: string = SQLSTATE.invalidAuthorization;
  if (field === 'db_names' || field === 'unknown_database') code = SQLSTATE.invalidCatalogName;
  else if (!field && err.code !== 'GH_ERR_ACCESS_DENIED' && err.code !== 'GH_ERR_UNAUTHENTICATED')
    return internalError(err);
  return { severity: 'FATAL', code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
}

export function wireErrorToPg(err: PgWireError): PgErrorFields {
  return { severity: 'FATAL', code: err.sqlstate, message: err.message };
}

/** Anything unexpected: say so without leaking internals, and point at the gateway log. */
export function internalError(err: unknown): PgErrorFields {
  if (isAuditUnavailable(err)) {
    return {
      severity: 'FATAL',
      code: SQLSTATE.systemError,
      message: `the audit log is unavailable, so the session cannot go on: ${(err as Error).message}`,
      hint: 'ask the Gatehouse admin to check the audit sinks (gatehouse logs, disk space)',
    };
  }
  const message =
    err instanceof GatehouseError ? err.message : 'internal error in the Gatehouse PostgreSQL adapter';
  return {
    severity: 'FATAL',
    code: SQLSTATE.internal,
    message,
    hint: err instanceof GatehouseError && err.hint ? err.hint : 'see the gateway log',
  };
}

/** Why the upstream could not be used, carried to psql and to db.session.start. */
export class UpstreamError extends Error {
  readonly pg: PgErrorFields;

  constructor(pg: PgErrorFields, opts: { cause?: unknown } = {}) {
    super(pg.message, opts.cause !== undefined ? { cause: opts.cause } : {});
    this.name = 'UpstreamError';
    this.pg = pg;
  }
}

/** AuditLog.emit rejects with the audit package's own error class; match it by its stable code. */
export function isAuditUnavailable(err: unknown): boolean {
  return (
    typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'GH_ERR_AUDIT_UNAVAILABLE'
  );
}
