import { type FormEvent, useEffect, useState } from 'react';
import { PUBLIC_ROUTES } from '../api/routes';
import { useApp } from '../app';
import { ErrorBox, Loading, Notice, useLoad } from '../components/ui';
import { assert, webAuthnSupported } from '../lib/webauthn';

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
  // Security keys need the gateway's DNS name (the RP id) and a browser that has WebAuthn.
  const keys = ping.state === 'ok' && ping.data.webauthn !== undefined && webAuthnSupported();

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const code = otp.trim();
      if (needsOtp && code === '' && keys) {
        // No code: the second factor is a security key (the password is checked before it is asked).
        const options = await api.webauthnLoginBegin(user, password);
        await api.login({ user, password, webauthn: await assert(options) });
      } else {
        await api.login({ user, password, ...(needsOtp ? { otp: code } : {}) });
      }
      await loggedIn();
    } catch (err) {
      setError(err);
      setPassword('');
      setOtp('');
    } finally {
      setBusy(false);
    }
  };

  const passkey = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const options = await api.passwordlessBegin();
      await api.passwordlessLogin({ webauthn: await assert(options) });
      await loggedIn();
    } catch (err) {
      setError(err);
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
                required={!keys}
                aria-describedby={keys ? 'otp-or-key' : undefined}
              />
              {keys ? (
                <span className="muted" id="otp-or-key">
                  Or leave it empty to use your security key.
                </span>
              ) : null}
            </label>
          ) : null}
          {error ? <ErrorBox error={error} /> : null}
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
      ) : null}
      {keys ? (
        <div className="card buttons">
          <button type="button" onClick={passkey} disabled={busy}>
            Sign in with a passkey
          </button>
        </div>
      ) : null}
    </main>
  );
}
