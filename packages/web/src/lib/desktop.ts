import { parseT } from './player';

/** The desktop page for one desktop and Windows login (a browser tab of its own). */
export function desktopPageUrl(desktop: string, login: string): string {
  return `/web/desktop?${new URLSearchParams({ name: desktop, login })}`;
}

/** The desktop player for a recorded desktop session, at recording time `t` (ms) when given. */
export function desktopPlaybackUrl(recording: string, opts: { t?: number; speed?: number } = {}): string {
  const q = new URLSearchParams({ recording });
  if (opts.t !== undefined) q.set('t', String(Math.max(0, Math.floor(opts.t))));
  if (opts.speed !== undefined && opts.speed !== 1) q.set('speed', String(opts.speed));
  return `/web/desktop?${q}`;
}

export type LiveDesktop = { kind: 'live'; desktop: string; login: string };
/** `t`: where a deep link starts (recording ms); without it playback starts at once from the start. */
export type DesktopPlayback = { kind: 'playback'; recording: string; speed: number; t?: number };
export type DesktopTarget = LiveDesktop | DesktopPlayback;

/** What the page opens, from its query string: a live desktop, or a recording to play. */
export function desktopFromSearch(search: URLSearchParams): DesktopTarget | undefined {
  const recording = search.get('recording');
  if (recording) {
    const speed = Number(search.get('speed') ?? '1');
    const t = parseT(search.get('t'));
    return {
      kind: 'playback',
      recording,
      speed: speed >= 0.25 && speed <= 16 ? speed : 1,
      ...(t === undefined ? {} : { t }),
    };
  }
  const desktop = search.get('name');
  const login = search.get('login');
  return desktop && login ? { kind: 'live', desktop, login } : undefined;
}

/** The tab's title line. */
export function desktopTitle(t: DesktopTarget): string {
  return t.kind === 'live' ? `${t.login} on ${t.desktop}` : `Recording ${t.recording}`;
}

/** The RDCleanPath WebSocket address for this page's origin. */
export function desktopSocketUrl(loc: { protocol: string; host: string }, path: string): string {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}${path}`;
}

/** What IronRDP's RDCleanPath error details mean for the person looking at the tab. */
export function explainDesktopError(
  d: { httpStatusCode?: number; wsaErrorCode?: number; tlsAlertCode?: number } | undefined,
): string {
  if (!d) return 'the desktop connection failed';
  if (d.httpStatusCode === 403)
    return 'access denied: your roles do not allow this desktop and login, or your access was revoked';
  if (d.httpStatusCode === 401) return 'you are not signed in';
  if (d.httpStatusCode === 502)
    return 'the desktop refused the gateway (its connection, or the login and password stored for it); an admin finds why in the audit log (desktop.session.start)';
  if (d.httpStatusCode !== undefined) return `the gateway refused the connection (HTTP ${d.httpStatusCode})`;
  if (d.tlsAlertCode !== undefined)
    return `the desktop's TLS certificate is not trusted or TLS failed (alert ${d.tlsAlertCode})`;
  if (d.wsaErrorCode !== undefined)
    return `the gateway cannot reach the desktop (socket error ${d.wsaErrorCode})`;
  return 'the desktop connection failed';
}
