import {
  createContext,
  lazy,
  type MouseEvent,
  type ReactNode,
  Suspense,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
} from 'react';
import { type ApiError, sessionCsrfStore, WebApi } from './api/client';
import type { PingResponse, WhoamiResponse } from './api/routes';
import { ErrorBox, Loading } from './components/ui';
import { shortId } from './lib/names';
import { matchPath, type RouteMatch, safeNext } from './lib/router';
import { terminalPageUrl } from './lib/terminal';
import { AccountPage } from './pages/account';
import { AuditPage } from './pages/audit';
import { ClusterPage } from './pages/cluster';
import { InvitePage } from './pages/invite';
import { LoginPage } from './pages/login';
import { BrowserMfaPage } from './pages/mfa';
import { RecordingsPage } from './pages/recordings';
import { RequestsPage } from './pages/requests';
import { ResourcesPage } from './pages/resources';
import { SessionsPage } from './pages/sessions';
import { UsersPage } from './pages/users';

export interface Session {
  whoami: WhoamiResponse;
  ping: PingResponse;
}

interface AppContext {
  api: WebApi;
  session: Session | undefined;
  /** The current URL's query string (without "?"): pages that keep state there re-read it on back/forward. */
  search: string;
  navigate(to: string, opts?: { replace?: boolean }): void;
  /** After a successful login: load the session and go where the user was headed. */
  loggedIn(): Promise<void>;
  logout(): Promise<void>;
}

// The player and the terminal carry xterm.js, the roles page CodeMirror: loaded only when one is opened.
const PlayerPage = lazy(() => import('./pages/player'));
const TerminalPage = lazy(() => import('./pages/terminal'));
const RolesPage = lazy(() => import('./pages/roles').then((m) => ({ default: m.RolesPage })));
// The IronRDP wasm client (several MB) loads only when a desktop opens.
const DesktopPage = lazy(() => import('./pages/desktop'));

const Ctx = createContext<AppContext | undefined>(undefined);

export function useApp(): AppContext {
  const c = useContext(Ctx);
  if (!c) throw new Error('useApp outside <App>');
  return c;
}

const FLASH_KEY = 'gatehouse.flash';

function location(): { path: string; search: URLSearchParams } {
  return { path: window.location.pathname, search: new URLSearchParams(window.location.search) };
}

export function App() {
  const [loc, setLoc] = useState(location);
  const [session, setSession] = useState<Session | undefined>();
  const [boot, setBoot] = useState<'pending' | 'done' | { error: unknown }>('pending');

  const navigate = useCallback((to: string, opts: { replace?: boolean } = {}) => {
    if (opts.replace) window.history.replaceState(null, '', to);
    else window.history.pushState(null, '', to);
    setLoc(location());
    window.scrollTo(0, 0);
  }, []);

  const toLogin = useCallback(
    (message: string | undefined) => {
      setSession(undefined);
      if (message) sessionStorage.setItem(FLASH_KEY, message);
      const cur = window.location.pathname + window.location.search;
      const next = cur.startsWith('/web/login') ? '' : `?next=${encodeURIComponent(cur)}`;
      navigate(`/web/login${next}`, { replace: true });
    },
    [navigate],
  );

  const api = useMemo(
    () =>
      new WebApi({
        csrf: sessionCsrfStore(sessionStorage),
        onSessionEnded: (err: ApiError) =>
          toLogin(
            err.code === 'GH_ERR_CSRF'
              ? 'This tab has no valid session key. Sign in again.'
              : 'Your session has expired or was ended. Sign in again.',
          ),
      }),
    [toLogin],
  );

  const loadSession = useCallback(async () => {
    const [whoami, ping] = await Promise.all([api.whoami(), api.ping()]);
    setSession({ whoami, ping });
  }, [api]);

  useEffect(() => {
    const onPop = () => setLoc(location());
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  const route = matchPath(loc.path);
  const isPublic = route.page === 'login' || route.page === 'invite' || route.page === 'mfa';

  // Every page its own title (history, tabs, screen readers); the terminal names itself after its tab.
  useEffect(() => {
    const t = pageTitle(route);
    if (t) document.title = `${t} · Gatehouse`;
  });

  // biome-ignore lint/correctness/useExhaustiveDependencies: boot once per page load
  useEffect(() => {
    if (isPublic) {
      setBoot('done');
      return;
    }
    if (!api.hasSession()) {
      setBoot('done');
      toLogin(undefined);
      return;
    }
    loadSession().then(
      () => setBoot('done'),
      (error: unknown) => setBoot({ error }),
    );
  }, []);

  const ctx: AppContext = {
    api,
    session,
    search: loc.search.toString(),
    navigate,
    loggedIn: async () => {
      await loadSession();
      navigate(safeNext(location().search.get('next')), { replace: true });
    },
    logout: async () => {
      try {
        await api.logout();
      } finally {
        toLogin('You are signed out.');
      }
    },
  };

  let body: ReactNode;
  if (route.page === 'login') body = <LoginPage flashKey={FLASH_KEY} />;
  else if (route.page === 'invite') body = <InvitePage token={route.token} />;
  else if (route.page === 'mfa') body = <BrowserMfaPage />;
  else if (boot === 'pending') body = <Loading what="your session" />;
  else if (typeof boot === 'object') {
    body = (
      <main className="narrow">
        <ErrorBox error={boot.error} onRetry={() => window.location.reload()} />
      </main>
    );
  } else if (!session) body = <Loading what="your session" />;
  else if (route.page === 'terminal') {
    // A browser tab of its own: the whole window is the terminal, no menu.
    body = (
      <Suspense fallback={<Loading what="the terminal" />}>
        <TerminalPage session={session} />
      </Suspense>
    );
  } else if (route.page === 'desktop') {
    body = (
      <Suspense fallback={<Loading what="the desktop client" />}>
        <DesktopPage />
      </Suspense>
    );
  } else body = <Shell route={route} session={session} />;

  return <Ctx.Provider value={ctx}>{body}</Ctx.Provider>;
}

export function Link({
  to,
  children,
  className,
  label,
}: {
  to: string;
  children: ReactNode;
  className?: string;
  /** The accessible name, when the visible text alone ("Play") does not say which. */
  label?: string;
}) {
  const { navigate } = useApp();
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={onClick} className={className} aria-label={label}>
      {children}
    </a>
  );
}

/**
 * A link that opens another browser tab of this app (the terminal). It keeps
 * the opener on purpose: a same-origin tab opened that way starts with a copy
 * of this tab's sessionStorage, so it holds the CSRF token and needs no new
 * sign-in (a `noopener` tab would start empty).
 */
export function NewTabLink({
  to,
  children,
  className,
  label,
}: {
  to: string;
  children: ReactNode;
  className?: string;
  /** The accessible name, when the visible text alone does not say which. */
  label?: string;
}) {
  return (
    // biome-ignore lint/security/noBlankTarget: same-origin on purpose; the opener is what carries the sign-in
    <a href={to} target="_blank" rel="opener" className={className} aria-label={label}>
      {children}
    </a>
  );
}

/** A page's title ("Audit log · Gatehouse"); undefined for the terminal, which titles itself. */
export function pageTitle(route: RouteMatch): string | undefined {
  switch (route.page) {
    case 'login':
      return 'Sign in';
    case 'invite':
      return 'Set your password';
    case 'mfa':
      return 'Security key';
    case 'cluster':
      return 'Cluster';
    case 'resources':
      return 'Resources';
    case 'audit':
      return 'Audit log';
    case 'users':
      return 'Users';
    case 'roles':
      return 'Roles';
    case 'recordings':
      return 'Recordings';
    case 'sessions':
      return 'Active sessions';
    case 'requests':
      return 'Access requests';
    case 'account':
      return 'Your account';
    case 'player':
      return `Recording ${shortId(route.id)}`;
    case 'terminal':
    case 'desktop':
      return undefined;
    case 'not-found':
      return 'Page not found';
    default: {
      const never: never = route;
      return String(never);
    }
  }
}

/**
 * The menu. `may` hides what the caller's roles do not grant (whoami's
 * permissions, from core): an auditor sees no Users or Roles. Sessions and
 * recordings answer everyone with their own, so they always show.
 */
const NAV: {
  to: string;
  label: string;
  page: RouteMatch['page'] | 'none';
  may?: (p: Permissions) => boolean;
}[] = [
  { to: '/web/cluster', label: 'Cluster', page: 'cluster' },
  { to: '/web/resources', label: 'Resources', page: 'resources' },
  { to: '/web/audit', label: 'Audit log', page: 'audit', may: (p) => p.searchAudit },
  { to: '/web/sessions', label: 'Sessions', page: 'sessions' },
  { to: '/web/recordings', label: 'Recordings', page: 'recordings' },
  { to: '/web/requests', label: 'Requests', page: 'requests' },
  { to: '/web/users', label: 'Users', page: 'users', may: (p) => p.listUsers },
  { to: '/web/roles', label: 'Roles', page: 'roles', may: (p) => p.listRoles },
  { to: '/web/account', label: 'Account', page: 'account' },
];

export type Permissions = WhoamiResponse['permissions'];

/** Whether the caller may open a shell anywhere: their roles name at least one login. */
export function mayOpenTerminal(session: Session): boolean {
  return session.whoami.logins.length > 0;
}

function Shell({ route, session }: { route: RouteMatch; session: Session }) {
  const { logout } = useApp();
  const [busy, setBusy] = useState(false);
  /** The header's menu on narrow windows (CSS shows the toggle below 900 px). */
  const [menuOpen, setMenuOpen] = useState(false);
  const where = JSON.stringify(route);
  // biome-ignore lint/correctness/useExhaustiveDependencies: closes the menu when the page changes
  useEffect(() => setMenuOpen(false), [where]);
  const perms = session.whoami.permissions;
  let page: ReactNode;
  switch (route.page) {
    case 'cluster':
      page = <ClusterPage />;
      break;
    case 'resources':
      page = <ResourcesPage />;
      break;
    case 'audit':
      page = <AuditPage />;
      break;
    case 'users':
      page = <UsersPage />;
      break;
    case 'roles':
      page = (
        <Suspense fallback={<Loading what="the role editor" />}>
          <RolesPage />
        </Suspense>
      );
      break;
    case 'recordings':
      page = <RecordingsPage />;
      break;
    case 'sessions':
      page = <SessionsPage />;
      break;
    case 'requests':
      page = <RequestsPage />;
      break;
    case 'account':
      page = <AccountPage />;
      break;
    case 'player':
      page = (
        <Suspense fallback={<Loading what="the player" />}>
          <PlayerPage id={route.id} />
        </Suspense>
      );
      break;
    case 'login':
    case 'invite':
    case 'mfa':
    case 'terminal':
    case 'desktop':
      page = null;
      break;
    case 'not-found':
      page = (
        <div className="error" role="alert">
          <strong>No page at {route.path}</strong>
          <div className="hint">
            Use the menu above, or go to the <Link to="/">cluster overview</Link>.
          </div>
        </div>
      );
      break;
    default: {
      const never: never = route;
      page = String(never);
    }
  }
  return (
    <div className="app">
      {/* The fragment moves the focus to <main> (tabIndex -1), past the menu. */}
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <div className="brand">
          Gatehouse <span className="cluster-name">{session.ping.cluster_name}</span>
        </div>
        <span className="current-user" data-testid="current-user">
          {session.whoami.user}
        </span>
        <button
          type="button"
          className="menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="topbar-menu"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          Menu
        </button>
        <div id="topbar-menu" className={`topbar-menu ${menuOpen ? 'open' : ''}`}>
          <nav aria-label="Main">
            {NAV.filter((n) => !n.may || n.may(perms)).map((n) => (
              <Link
                key={n.to}
                to={n.to}
                className={
                  route.page === n.page || (n.page === 'recordings' && route.page === 'player')
                    ? 'active'
                    : ''
                }
              >
                {n.label}
              </Link>
            ))}
          </nav>
          <div className="who">
            {mayOpenTerminal(session) ? (
              <NewTabLink to={terminalPageUrl()} className="new-terminal">
                New terminal
              </NewTabLink>
            ) : null}
            <button
              type="button"
              disabled={busy}
              onClick={() => {
                setBusy(true);
                logout().finally(() => setBusy(false));
              }}
            >
              Sign out
            </button>
          </div>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </div>
  );
}
