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
import { matchPath, type RouteMatch, safeNext } from './lib/router';
import { terminalPageUrl } from './lib/terminal';
import { AuditPage } from './pages/audit';
import { ClusterPage } from './pages/cluster';
import { InvitePage } from './pages/invite';
import { LoginPage } from './pages/login';
import { RecordingsPage } from './pages/recordings';
import { ResourcesPage } from './pages/resources';
import { RolesPage } from './pages/roles';
import { SessionsPage } from './pages/sessions';
import { UsersPage } from './pages/users';

export interface Session {
  whoami: WhoamiResponse;
  ping: PingResponse;
}

interface AppContext {
  api: WebApi;
  session: Session | undefined;
  navigate(to: string, opts?: { replace?: boolean }): void;
  /** After a successful login: load the session and go where the user was headed. */
  loggedIn(): Promise<void>;
  logout(): Promise<void>;
}

// The player and the terminal carry xterm.js: loaded only when one is opened.
const PlayerPage = lazy(() => import('./pages/player'));
const TerminalPage = lazy(() => import('./pages/terminal'));

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
  const isPublic = route.page === 'login' || route.page === 'invite';

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
  } else body = <Shell route={route} session={session} />;

  return <Ctx.Provider value={ctx}>{body}</Ctx.Provider>;
}

export function Link({ to, children, className }: { to: string; children: ReactNode; className?: string }) {
  const { navigate } = useApp();
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={onClick} className={className}>
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
}: {
  to: string;
  children: ReactNode;
  className?: string;
}) {
  return (
    // biome-ignore lint/security/noBlankTarget: same-origin on purpose; the opener is what carries the sign-in
    <a href={to} target="_blank" rel="opener" className={className}>
      {children}
    </a>
  );
}

const NAV: { to: string; label: string; page: RouteMatch['page'] | 'none' }[] = [
  { to: '/web/cluster', label: 'Cluster', page: 'cluster' },
  { to: '/web/resources', label: 'Resources', page: 'resources' },
  { to: '/web/audit', label: 'Audit log', page: 'audit' },
  { to: '/web/sessions', label: 'Sessions', page: 'sessions' },
  { to: '/web/recordings', label: 'Recordings', page: 'recordings' },
  { to: '/web/users', label: 'Users', page: 'users' },
  { to: '/web/roles', label: 'Roles', page: 'roles' },
];

function Shell({ route, session }: { route: RouteMatch; session: Session }) {
  const { logout } = useApp();
  const [busy, setBusy] = useState(false);
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
      page = <RolesPage />;
      break;
    case 'recordings':
      page = <RecordingsPage />;
      break;
    case 'sessions':
      page = <SessionsPage />;
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
    case 'terminal':
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
      <header className="topbar">
        <div className="brand">
          Gatehouse <span className="cluster-name">{session.ping.cluster_name}</span>
        </div>
        <nav>
          {NAV.map((n) => (
            <Link
              key={n.to}
              to={n.to}
              className={
                route.page === n.page || (n.page === 'recordings' && route.page === 'player') ? 'active' : ''
              }
            >
              {n.label}
            </Link>
          ))}
        </nav>
        <div className="who">
          <NewTabLink to={terminalPageUrl()} className="new-terminal">
            New terminal
          </NewTabLink>
          <span data-testid="current-user">{session.whoami.user}</span>
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
      </header>
      <main>{page}</main>
    </div>
  );
}
