import { toGatehouseError } from '@gatehouse/core';
import { RDCLEANPATH_ERROR, type RDCleanPathError } from './wire/rdcleanpath.js';

/**
 * Why a desktop connection failed, in RDCleanPath's own terms (IronRDP
 * shows the HTTP status, the socket error or the TLS alert to the user).
 */
export class DesktopError extends Error {
  override name = 'DesktopError';
  constructor(
    message: string,
    readonly answer: RDCleanPathError,
    readonly reason: 'malformed' | 'oversized' | 'timeout' | 'unsupported' | 'upstream',
    readonly x224?: Buffer,
  ) {
    super(message);
  }
}

/** Winsock codes IronRDP names (WSAECONNREFUSED, WSAETIMEDOUT, WSAHOST_NOT_FOUND, WSAECONNRESET). */
const WSA = { ECONNREFUSED: 10061, ETIMEDOUT: 10060, ENOTFOUND: 11001, ECONNRESET: 10054 } as const;
/** TLS alerts (RFC 8446 6.2) for a desktop whose certificate is not trusted, and any other handshake failure. */
export const TLS_ALERT = { handshakeFailure: 40, badCertificate: 42, unknownCa: 48 } as const;

export function httpError(status: number): RDCleanPathError {
  return { errorCode: RDCLEANPATH_ERROR.general, httpStatusCode: status };
}

/** The RDCleanPath error for anything that stopped a desktop session before its relay ran. */
export function answerFor(err: unknown): RDCleanPathError {
  if (err instanceof DesktopError) return err.answer;
  const ge = toGatehouseError(err);
  switch (ge?.code) {
    case 'GH_ERR_UNAUTHENTICATED':
      return httpError(401);
    case 'GH_ERR_ACCESS_DENIED':
    case 'GH_ERR_USER_LOCKED':
    case 'GH_ERR_CERT_EXPIRED':
    case 'GH_ERR_CERT_INVALID':
      return httpError(403);
    case 'GH_ERR_NOT_FOUND':
      return httpError(404);
    case 'GH_ERR_RATE_LIMITED':
      return httpError(429);
    case 'GH_ERR_UPSTREAM_UNAVAILABLE': {
      const sys = (ge.cause as NodeJS.ErrnoException | undefined)?.code;
      const wsa = sys && sys in WSA ? WSA[sys as keyof typeof WSA] : undefined;
      return wsa ? { errorCode: RDCLEANPATH_ERROR.general, wsaLastError: wsa } : httpError(502);
    }
    case 'GH_ERR_AUDIT_UNAVAILABLE':
    case 'GH_ERR_BACKEND_UNAVAILABLE':
      return httpError(503);
    default:
      return httpError(500);
  }
}
