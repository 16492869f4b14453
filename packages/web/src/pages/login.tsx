import { type FormEvent, useEffect, useState } from 'react';
import { PUBLIC_ROUTES } from '../api/routes';
import { useApp } from '../app';
import { ErrorBox, Loading, Notice, useLoad } from '../components/ui';

export function LoginPage({ flashKey }: { flashKey: string }) {
  const { api, loggedIn } = useApp();
  const [ping, reloadPing] = useLoad(() => api.ping(), []);
  const [connectors] = useLoad(() => api.ssoConnectors(), []);
  // A failed SSO login comes back here with the gateway's message.
  const [ssoErrorId] = useState(() => new URLSearchParams(window.location.search).get('sso_error') ?? '');
  const [ssoError] = useLoad(
    async () => (ssoErrorId ? await api.ssoError(ssoErrorId) : undefined),
    [ssoErrorId],
  );

  // biome-ignore lint/correctness/useExhaustiveDependencies: once, for the URL the gateway's SSO callback sent
  useEffect(() => {
    const m = /^#sso_csrf=([A-Za-z0-9_-]{20,100})$/.exec(window.location.hash);
    if (!m) return;
    window.history.replaceState(null, '', window.location.pathname);
    api.adoptSsoSession(m[1]!);
    loggedIn().catch((err: unknown) => setError(err));
  }, []);
  const [flash] = useState(() => {
    const m = sessionStorage.getItem(flashKey) ?? undefined;
    sessionStorage.removeItem(flashKey);
    return m;
  });
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [otp, setOtp] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();

  const needsOtp = ping.state === 'ok' && ping.data.second_factor === 'otp';

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.login({ user, password, ...(needsOtp ? { otp: otp.trim() } : {}) });
      await loggedIn();
    } catch (err) {
      setError(err);
      setPassword('');
      setOtp('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="narrow">
      <h1>Sign in to Gatehouse</h1>
      {ping.state === 'ok' ? (
        <p className="muted">
          Cluster <strong>{ping.data.cluster_name}</strong> at {ping.data.public_addr}
        </p>
      ) : null}
      {flash ? <Notice>{flash}</Notice> : null}
      {ping.state === 'loading' ? <Loading what="cluster information" /> : null}
      {ping.state === 'error' ? <ErrorBox error={ping.error} onRetry={reloadPing} /> : null}
      {ssoError.state === 'ok' && ssoError.data ? (
        <Notice>
          Single sign-on failed: {ssoError.data.message}
          {ssoError.data.hint ? ` (${ssoError.data.hint})` : ''}
        </Notice>
      ) : null}
      {ping.state === 'ok' && connectors.state === 'ok' && connectors.data.length > 0 ? (
        <div className="card buttons">
          {connectors.data.map((c) => (
            <a
              key={c.name}
              className="button primary"
              href={PUBLIC_ROUTES.ssoWebStart[1].replace(':name', encodeURIComponent(c.name))}
            >
              Sign in with {c.display}
            </a>
          ))}
        </div>
      ) : null}
      {ping.state === 'ok' ? (
        <form className="card" onSubmit={submit} aria-label="Sign in">
          <label>
            User
            <input
              name="user"
              autoComplete="username"
              value={user}
              onChange={(e) => setUser(e.target.value)}
              required
            />
          </label>
          <label>
            Password
            <input
              name="password"
              type="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
            />
          </label>
          {needsOtp ? (
            <label>
              Authenticator code
              <input
                name="otp"
                inputMode="numeric"
                autoComplete="one-time-code"
                pattern="[0-9 ]{6,8}"
                value={otp}
                onChange={(e) => setOtp(e.target.value)}
                required
              />
            </label>
          ) : null}
          {error ? <ErrorBox error={error} /> : null}
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      ) : null}
    </main>
  );
}
