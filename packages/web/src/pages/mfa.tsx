import { useEffect, useRef, useState } from 'react';
import type { BrowserMfaPage as Pending } from '../api/routes';
import { useApp } from '../app';
import { ErrorBox, Loading, Notice } from '../components/ui';
import { assert, webAuthnSupported } from '../lib/webauthn';

type State =
  | { state: 'loading' }
  | { state: 'error'; error: unknown }
  | { state: 'ok'; pending: Pending }
  | { state: 'sent' };

/**
 * /web/mfa#ID: the CLI's security key check (`gatehouse login`, `gatehouse
 * ssh` and the others with a key). A key signs for this origin only, so the
 * CLI sends the browser here: the page takes the pending check (the link
 * works once), asks the key, and sends the answer back to the CLI's loopback
 * callback with the CLI's state. Core checks the answer when the CLI uses it.
 */
export function BrowserMfaPage() {
  const { api } = useApp();
  const [s, setS] = useState<State>({ state: 'loading' });
  const [busy, setBusy] = useState(false);
  const taken = useRef(false);

  useEffect(() => {
    // Another link opened in this tab changes the fragment only: load it as the page it is.
    const onHash = () => window.location.reload();
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    // Taking the check uses up the link: once per page load, even if the effect runs twice.
    if (taken.current) return;
    taken.current = true;
    const id = window.location.hash.slice(1);
    // The id is a one-time bearer link: keep it out of the history once read.
    window.history.replaceState(null, '', window.location.pathname);
    api.browserMfaTake(id).then(
      (pending) => setS({ state: 'ok', pending }),
      (error: unknown) => setS({ state: 'error', error }),
    );
  }, [api]);

  const back = (p: Pending, params: Record<string, string>) => {
    const u = new URL(p.redirect_url);
    u.searchParams.set('state', p.state);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    setS({ state: 'sent' });
    window.location.replace(u.href);
  };

  const answerWithKey = async (p: Pending) => {
    setBusy(true);
    try {
      const credential = await assert(p.options);
      back(p, { credential: JSON.stringify(credential) });
    } catch (e) {
      setBusy(false);
      setS({ state: 'error', error: e });
      // The CLI is waiting: tell it the key did not answer, so it stops with the reason.
      back(p, {
        error: 'GH_ERR_WEBAUTHN_INVALID',
        message: `the security key did not answer: ${e instanceof Error ? e.message : String(e)}`,
      });
    }
  };

  return (
    <main className="narrow">
      <h1>Security key</h1>
      {s.state === 'loading' ? <Loading what="the check" /> : null}
      {s.state === 'error' ? <ErrorBox error={s.error} /> : null}
      {s.state === 'sent' ? (
        <Notice kind="success">The answer went back to the terminal. You can close this window.</Notice>
      ) : null}
      {s.state === 'ok' ? (
        <section className="card" aria-label="Security key check">
          <p>
            The gatehouse command in your terminal asks your security key to confirm{' '}
            <strong data-testid="mfa-what">{s.pending.describe}</strong> for user{' '}
            <strong data-testid="mfa-user">{s.pending.user}</strong>.
          </p>
          <p>Continue only if you started that command yourself.</p>
          {webAuthnSupported() ? (
            <button
              type="button"
              className="primary"
              disabled={busy}
              onClick={() => void answerWithKey(s.pending)}
            >
              Use security key
            </button>
          ) : (
            <ErrorBox
              error={new Error('this browser cannot use security keys: open the link in another one')}
            />
          )}
        </section>
      ) : null}
    </main>
  );
}
