/** The desktop page for one desktop and Windows login (a browser tab of its own). */
export function desktopPageUrl(desktop: string, login: string): string {
  return `/web/desktop?${new URLSearchParams({ name: desktop, login })}`;
}

/** The desktop page playing a recorded desktop session. */
export function desktopPlaybackUrl(recording: string, speed = 1): string {
  return `/web/desktop?${new URLSearchParams({ recording, speed: String(speed) })}`;
}

export type DesktopTarget =
  | { kind: 'live'; desktop: string; login: string }
  | { kind: 'playback'; recording: string; speed: number };

/** What the page opens, from its query string: a live desktop, or a recording to play. */
export function desktopFromSearch(search: URLSearchParams): DesktopTarget | undefined {
  const recording = search.get('recording');
  if (recording) {
    const speed = Number(search.get('speed') ?? '1');
    return { kind: 'playback', recording, speed: speed >= 0.25 && speed <= 16 ? speed : 1 };
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
