/** Client-side routes; core answers every non-/v1, non-asset path with index.html. */
export type RouteMatch =
  | { page: 'login' }
  | { page: 'invite'; token: string }
  | { page: 'mfa' }
  | { page: 'cluster' }
  | { page: 'resources' }
  | { page: 'audit' }
  | { page: 'users' }
  | { page: 'roles' }
  | { page: 'recordings' }
  | { page: 'sessions' }
  | { page: 'requests' }
  | { page: 'account' }
  | { page: 'player'; id: string }
  | { page: 'terminal' }
  | { page: 'desktop' }
  | { page: 'not-found'; path: string };

export function matchPath(pathname: string): RouteMatch {
  const p = pathname.replace(/\/+$/, '') || '/';
  if (p === '/' || p === '/web' || p === '/web/cluster') return { page: 'cluster' };
  if (p === '/web/login') return { page: 'login' };
  if (p === '/web/mfa') return { page: 'mfa' };
  if (p === '/web/resources') return { page: 'resources' };
  if (p === '/web/audit') return { page: 'audit' };
  if (p === '/web/users') return { page: 'users' };
  if (p === '/web/roles') return { page: 'roles' };
  if (p === '/web/recordings') return { page: 'recordings' };
  if (p === '/web/sessions') return { page: 'sessions' };
  if (p === '/web/requests') return { page: 'requests' };
  if (p === '/web/account') return { page: 'account' };
  if (p === '/web/terminal') return { page: 'terminal' };
  if (p === '/web/desktop') return { page: 'desktop' };
  const invite = /^\/web\/invite\/([^/]+)$/.exec(p);
  const player = /^\/web\/recordings\/([^/]+)$/.exec(p);
  try {
    if (invite) return { page: 'invite', token: decodeURIComponent(invite[1]!) };
    if (player) return { page: 'player', id: decodeURIComponent(player[1]!) };
  } catch {
    // A malformed %-escape names nothing.
  }
  return { page: 'not-found', path: p };
}

/** Only same-site paths are followed after login, never another origin. */
export function safeNext(next: string | null | undefined): string {
  if (!next?.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (next.startsWith('/web/login')) return '/';
  return next;
}
