import type { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import { type WebSession, WebSessions } from '../auth/sessions.js';
import type { Authorizer, Principal } from '../authz/authorizer.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { header, parseCookies } from './http.js';

export const SESSION_COOKIE = 'gh_session';

/** Who made an HTTP request (an API call or a WebSocket upgrade), checked now. */
export interface Caller {
  principal: Principal;
  auth: 'client-cert' | 'session';
  session?: { id: string; value: WebSession };
}

export interface CallerDeps {
  authorizer: Authorizer;
  sessions: WebSessions;
}

/**
 * How a cookie-authenticated request proves it comes from the web UI and not
 * from another site the browser is visiting:
 * - `none`: a read (GET, HEAD), which changes nothing;
 * - `csrf-header`: the X-CSRF-Token header (a state-changing API call);
 * - `origin`: a WebSocket handshake, where a browser cannot add headers but
 *   always sends Origin: its host must be the host the request went to.
 */
export type CrossSiteCheck = 'none' | 'csrf-header' | 'origin';

/**
 * Authenticates a request: a client certificate from the user CA (mutual
 * TLS, the CLI), else the web session cookie plus `check`. Throws
 * GH_ERR_UNAUTHENTICATED, GH_ERR_CSRF, or what Authorizer.principal throws
 * (expired, locked, deleted user).
 */
export async function authenticateCaller(
  d: CallerDeps,
  req: IncomingMessage,
  check: CrossSiteCheck,
): Promise<Caller> {
  const sock = req.socket;
  const peer = sock instanceof TLSSocket ? sock.getPeerX509Certificate() : undefined;
  if (peer) {
    // A browser may hold a client certificate too, and sends Origin on every
    // WebSocket handshake: a foreign page must not ride on it either.
    if (check === 'origin' && header(req, 'origin') !== undefined) checkOrigin(req);
    const identity = d.authorizer.identityFromCert(peer as X509Certificate);
    return { principal: await d.authorizer.principal(identity), auth: 'client-cert' };
  }
  const id = parseCookies(req.headers.cookie)[SESSION_COOKIE];
  const session = id ? await d.sessions.get(id) : undefined;
  if (!id || !session) {
    throw new GatehouseError('GH_ERR_UNAUTHENTICATED', 'not logged in', {
      hint: 'log in with gatehouse login --proxy HOST:PORT (or sign in again in the browser)',
    });
  }
  if (check === 'csrf-header' && !WebSessions.csrfMatches(session, header(req, 'x-csrf-token'))) {
    throw new GatehouseError('GH_ERR_CSRF', 'missing or wrong X-CSRF-Token header', {
      hint: 'send the csrf_token from the login response in the X-CSRF-Token header',
    });
  }
  if (check === 'origin') checkOrigin(req);
  // A web session carries no traits: they come from the user record, and it
  // lasts until the session expires.
  const identity: Identity = {
    user: session.user,
    userId: session.userId,
    roles: session.roles,
    traits: {},
    expires: new Date(session.expires),
    ...(session.accessRequests?.length ? { accessRequests: session.accessRequests } : {}),
  };
  let principal: Principal;
  try {
    principal = await d.authorizer.principal(identity, { traitsFromUser: true });
  } catch (err) {
    // A session that took on a request ends with it (as its certificate would): the
    // browser signs in again, with standing roles, instead of failing every call.
    if (session.accessRequests?.length && isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')) {
      await d.sessions.delete(id);
      throw new GatehouseError('GH_ERR_UNAUTHENTICATED', `your session ended: ${(err as Error).message}`, {
        hint: 'sign in again (your standing roles stay), or ask for access again on the Requests page',
      });
    }
    throw err;
  }
  return { principal, auth: 'session', session: { id, value: session } };
}

/** The Origin header must name the host the request was sent to (https only). */
function checkOrigin(req: IncomingMessage): void {
  const origin = header(req, 'origin');
  const host = header(req, 'host');
  let originHost: string | undefined;
  try {
    const u = origin ? new URL(origin) : undefined;
    originHost = u?.protocol === 'https:' ? u.host : undefined;
  } catch {
    originHost = undefined; // "null" or garbage: no origin to compare
  }
  if (!originHost || !host || originHost.toLowerCase() !== host.toLowerCase()) {
    throw new GatehouseError(
      'GH_ERR_CSRF',
      origin
        ? `cross-site WebSocket refused: Origin ${origin} is not https://${host ?? '(no Host header)'}`
        : 'cross-site WebSocket refused: no Origin header',
      { hint: 'open the terminal from the Gatehouse web UI on this address' },
    );
  }
}
