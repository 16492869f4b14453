/**
 * The audit page's view as a URL query string, so a view can be shared,
 * bookmarked and walked with the back button, and what "system events" and
 * severities mean for the filter. Pure: unit-tested in Node.
 */
import type { AuditQuery } from '../api/routes';
import { EVENT_CODES } from '../api/routes';

/**
 * Events the gateway logs about traffic that never became a user's action
 * (port scans, TLS handshakes from health checks, malformed requests) and
 * its own start and stop: hidden by default, they outnumber what users did.
 * Denials of a signed-in user (access.denied) are user activity and stay.
 */
export const SYSTEM_EVENT_TYPES: readonly string[] = [
  'listener.reject',
  'listener.reject.summary',
  'http.reject',
  'ssh.reject',
  'db.reject',
  'gateway.start',
  'gateway.stop',
];

export type Show = 'user' | 'all' | 'warnings';

/** The "Show" choices, first the default. */
export const SHOW_OPTIONS: readonly { value: Show; label: string }[] = [
  { value: 'user', label: 'User activity (no system events)' },
  { value: 'warnings', label: 'Warnings and errors only' },
  { value: 'all', label: 'Everything' },
];

export interface AuditView {
  /** ISO bounds, as the API takes them. */
  from?: string | undefined;
  to?: string | undefined;
  type?: string | undefined;
  user?: string | undefined;
  q?: string | undefined;
  show: Show;
  /** The event whose details are open in the side panel. */
  event?: string | undefined;
}

const ALL_TYPES = Object.keys(EVENT_CODES).sort();

/** The last letter of an audit code is its severity: I(nfo), W(arning), E(rror). */
export function severityOf(code: string): 'info' | 'warning' | 'error' {
  const s = code.slice(-1);
  return s === 'E' ? 'error' : s === 'W' ? 'warning' : 'info';
}

/** Types that can be logged as a warning or an error (always, or when they fail). */
export const WARNING_TYPES: readonly string[] = ALL_TYPES.filter((t) => {
  const c = EVENT_CODES[t as keyof typeof EVENT_CODES];
  const codes: string[] = typeof c === 'string' ? [c] : [c.ok, c.fail];
  return codes.some((x) => severityOf(x) !== 'info');
});

export function isSystemType(type: string): boolean {
  return SYSTEM_EVENT_TYPES.includes(type);
}

/** Reads a view from `location.search`; unknown or bad values are dropped, never guessed. */
export function viewFromSearch(search: URLSearchParams): AuditView {
  const str = (k: string) => {
    const v = search.get(k)?.trim();
    return v ? v : undefined;
  };
  const show = search.get('show');
  const type = str('type');
  return {
    from: str('from'),
    to: str('to'),
    type: type && Object.hasOwn(EVENT_CODES, type) ? type : undefined,
    user: str('user'),
    q: str('q'),
    show: show === 'all' || show === 'warnings' ? show : 'user',
    event: str('event'),
  };
}

/** The query string of a view (defaults left out, so a plain view has a plain URL). */
export function viewToSearch(v: AuditView): string {
  const s = new URLSearchParams();
  if (v.from) s.set('from', v.from);
  if (v.to) s.set('to', v.to);
  if (v.type) s.set('type', v.type);
  if (v.user) s.set('user', v.user);
  if (v.q) s.set('q', v.q);
  if (v.show !== 'user') s.set('show', v.show);
  if (v.event) s.set('event', v.event);
  return s.toString();
}

/**
 * The API search for a view. An event type picked by name is searched even
 * when it is a system event (the user asked for it); otherwise "user"
 * searches every type but the system ones and "warnings" the types that can
 * be warnings or errors (their info-level events, e.g. a successful login,
 * are then left out by `shownOnPage`).
 */
export function viewToQuery(v: AuditView, limit: number): AuditQuery {
  const q: AuditQuery = { limit };
  if (v.from) q.from = v.from;
  if (v.to) q.to = v.to;
  if (v.user) q.user = v.user;
  if (v.q) q.q = v.q;
  if (v.type) q.types = [v.type];
  else if (v.show === 'user') q.types = ALL_TYPES.filter((t) => !isSystemType(t));
  else if (v.show === 'warnings') q.types = [...WARNING_TYPES];
  return q;
}

/** Whether the page shows an event the search returned (only severity is filtered here). */
export function shownOnPage(v: AuditView, e: { code: string }): boolean {
  return v.show !== 'warnings' || severityOf(e.code) !== 'info';
}
