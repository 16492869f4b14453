/** The desktop page for one desktop and Windows login (a browser tab of its own). */
export function desktopPageUrl(desktop: string, login: string): string {
  return `/web/desktop?${new URLSearchParams({ name: desktop, login })}`;
}

/** The desktop and login the page opens, from its query string. */
export function desktopFromSearch(search: URLSearchParams): { desktop: string; login: string } | undefined {
  const desktop = search.get('name');
  const login = search.get('login');
  return desktop && login ? { desktop, login } : undefined;
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
  if (d.httpStatusCode !== undefined) return `the gateway refused the connection (HTTP ${d.httpStatusCode})`;
  if (d.tlsAlertCode !== undefined)
    return `the desktop's TLS certificate is not trusted or TLS failed (alert ${d.tlsAlertCode})`;
  if (d.wsaErrorCode !== undefined)
    return `the gateway cannot reach the desktop (socket error ${d.wsaErrorCode})`;
  return 'the desktop connection failed';
}
