import QRCode from 'qrcode';
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { Link, useApp } from '../app';
import { ErrorBox, formatTime, Loading, Notice, useLoad } from '../components/ui';

/** Invite or reset acceptance: set a password and, when required, enroll an authenticator. */
export function InvitePage({ token }: { token: string }) {
  const { api } = useApp();
  const [info, reload] = useLoad(() => api.inspectInvite(token), [token]);
  const [password, setPassword] = useState('');
  const [again, setAgain] = useState('');
  const [otp, setOtp] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [done, setDone] = useState(false);

  if (done) {
    return (
      <main className="narrow">
        <h1>All set</h1>
        <Notice kind="success">
          Your password is set
          {info.state === 'ok' && info.data.totp ? ' and your authenticator is enrolled' : ''}.
        </Notice>
        <p>
          <Link to="/web/login" className="button primary">
            Sign in
          </Link>
        </p>
      </main>
    );
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    if (password !== again) {
      setError(new Error('the two passwords differ: type the same password twice'));
      return;
    }
    setBusy(true);
    try {
      await api.acceptInvite(token, { password, ...(otp.trim() ? { otp: otp.trim() } : {}) });
      setDone(true);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="narrow">
      <h1>
        {info.state === 'ok' && info.data.kind === 'reset' ? 'Reset your account' : 'Accept your invite'}
      </h1>
      {info.state === 'loading' ? <Loading what="the invite" /> : null}
      {info.state === 'error' ? <ErrorBox error={info.error} onRetry={reload} /> : null}
      {info.state === 'ok' ? (
        <form className="card" onSubmit={submit} aria-label="Accept invite">
          <p>
            User <strong data-testid="invite-user">{info.data.user}</strong>. This link expires{' '}
            {formatTime(info.data.expires)}.
          </p>
          <label>
            New password
            <input
              name="password"
              type="password"
              autoComplete="new-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              required
            />
          </label>
          <label>
            The same password again
            <input
              name="password-again"
              type="password"
              autoComplete="new-password"
              value={again}
              onChange={(e) => setAgain(e.target.value)}
              required
            />
          </label>
          {info.data.totp ? (
            <fieldset>
              <legend>Authenticator app</legend>
              <p>
                Scan this code with an authenticator app (or type the secret below), then enter the code it
                shows.
              </p>
              <QrCanvas text={info.data.totp.uri} />
              <p>
                Secret: <code data-testid="totp-secret">{info.data.totp.secret}</code>
              </p>
              <label>
                Code from the app
                <input
                  name="otp"
                  inputMode="numeric"
                  autoComplete="one-time-code"
                  value={otp}
                  onChange={(e) => setOtp(e.target.value)}
                  required
                />
              </label>
            </fieldset>
          ) : null}
          {error ? <ErrorBox error={error} /> : null}
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Saving…' : 'Set password'}
          </button>
        </form>
      ) : null}
    </main>
  );
}

/** Drawn on a canvas in the page: the secret never leaves the browser for a QR service. */
export function QrCanvas({ text }: { text: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    if (!ref.current) return;
    QRCode.toCanvas(ref.current, text, { margin: 2, width: 200, errorCorrectionLevel: 'M' }).catch(setError);
  }, [text]);
  return (
    <>
      <canvas ref={ref} className="qr" data-testid="totp-qr" aria-label="QR code for the authenticator app" />
      {error ? <ErrorBox error={error} /> : null}
    </>
  );
}
