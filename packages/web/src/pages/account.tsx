import { type FormEvent, useState } from 'react';
import type { MfaDeviceInfo, MfaTotpBeginResponse } from '../api/routes';
import { useApp } from '../app';
import { ErrorBox, formatTime, Loading, Notice, TableScroll, useLoad } from '../components/ui';
import { register, webAuthnSupported } from '../lib/webauthn';
import { QrCanvas } from './invite';

/**
 * The signed-in user's own account: their second-factor devices (TOTP apps,
 * security keys, passkeys), each named; add and remove. Core refuses to
 * remove the last one while the cluster requires a second factor.
 */
export function AccountPage() {
  const { api, session } = useApp();
  const [devices, reload] = useLoad(() => api.mfaDevices(), []);
  const [message, setMessage] = useState<string | undefined>();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<string | undefined>();
  const keys = session?.ping.webauthn !== undefined && webAuthnSupported();

  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    setError(undefined);
    setMessage(undefined);
    try {
      setMessage(await what());
      reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setConfirm(undefined);
    }
  };

  const remove = (d: MfaDeviceInfo) =>
    run(async () => {
      await api.mfaRemove(d.id);
      return `Removed "${d.name}".`;
    });

  return (
    <main id="main" tabIndex={-1}>
      <h1>Your account</h1>
      <p className="muted">
        Signed in as <strong>{session?.whoami.user}</strong>. Second-factor devices protect your sign-in: an
        authenticator app, a security key, or a passkey (which also signs you in without a password).
      </p>
      {message ? <Notice kind="success">{message}</Notice> : null}
      {error ? <ErrorBox error={error} /> : null}
      <h2>Second-factor devices</h2>
      {devices.state === 'loading' ? <Loading what="your devices" /> : null}
      {devices.state === 'error' ? <ErrorBox error={devices.error} onRetry={reload} /> : null}
      {devices.state === 'ok' ? (
        devices.data.length === 0 ? (
          <p>You have no second-factor device.</p>
        ) : (
          <TableScroll label="Second-factor devices">
            <table aria-label="Second-factor devices">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Type</th>
                  <th scope="col">Added</th>
                  <th scope="col">Last used</th>
                  <th scope="col">Actions</th>
                </tr>
              </thead>
              <tbody>
                {devices.data.map((d) => (
                  <tr key={d.id} data-testid="mfa-device">
                    <td>{d.name}</td>
                    <td>{kindLabel(d)}</td>
                    <td>{formatTime(d.added_at)}</td>
                    <td>{d.last_used_at ? formatTime(d.last_used_at) : 'never'}</td>
                    <td>
                      {confirm === d.id ? (
                        <>
                          <button type="button" className="danger" disabled={busy} onClick={() => remove(d)}>
                            Remove {d.name} now
                          </button>{' '}
                          <button type="button" onClick={() => setConfirm(undefined)}>
                            Keep it
                          </button>
                        </>
                      ) : (
                        <button
                          type="button"
                          disabled={busy}
                          aria-label={`Remove ${d.name}`}
                          onClick={() => setConfirm(d.id)}
                        >
                          Remove
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        )
      ) : null}
      {keys ? <AddKey busy={busy} run={run} /> : null}
      <AddTotp busy={busy} run={run} />
    </main>
  );
}

function kindLabel(d: MfaDeviceInfo): string {
  if (d.kind === 'totp') return 'Authenticator app';
  return d.passkey ? 'Passkey' : 'Security key';
}

function AddKey({ busy, run }: { busy: boolean; run: (what: () => Promise<string>) => Promise<void> }) {
  const { api } = useApp();
  const [name, setName] = useState('');
  const [passkey, setPasskey] = useState(false);
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const options = await api.mfaWebAuthnBegin(passkey);
      const d = await api.mfaWebAuthnAdd(name.trim(), await register(options));
      setName('');
      return `Added "${d.name}".`;
    });
  };
  return (
    <form className="card" onSubmit={submit} aria-label="Add a security key">
      <h2>Add a security key or passkey</h2>
      <label>
        Key name
        <input value={name} onChange={(e) => setName(e.target.value)} maxLength={64} required />
      </label>
      <label>
        <input type="checkbox" checked={passkey} onChange={(e) => setPasskey(e.target.checked)} />
        Passkey: also sign in with it alone (it asks for your PIN or fingerprint)
      </label>
      <button type="submit" className="primary" disabled={busy}>
        Add key
      </button>
    </form>
  );
}

function AddTotp({ busy, run }: { busy: boolean; run: (what: () => Promise<string>) => Promise<void> }) {
  const { api } = useApp();
  const [pending, setPending] = useState<MfaTotpBeginResponse | undefined>();
  const [name, setName] = useState('');
  const [code, setCode] = useState('');
  const [error, setError] = useState<unknown>();
  const start = async () => {
    setError(undefined);
    try {
      setPending(await api.mfaTotpBegin());
    } catch (err) {
      setError(err);
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!pending) return;
    void run(async () => {
      const d = await api.mfaTotpAdd({
        pending_id: pending.pending_id,
        name: name.trim(),
        code: code.trim(),
      });
      setPending(undefined);
      setName('');
      setCode('');
      return `Added "${d.name}".`;
    });
  };
  return (
    <section className="card" aria-label="Add an authenticator app">
      <h2>Add an authenticator app</h2>
      {error ? <ErrorBox error={error} /> : null}
      {pending ? (
        <form onSubmit={submit}>
          <QrCanvas text={pending.uri} />
          <p className="muted">
            Or type the secret: <code>{pending.secret}</code>
          </p>
          <label>
            App name
            <input value={name} onChange={(e) => setName(e.target.value)} maxLength={64} required />
          </label>
          <label>
            Code from the app
            <input
              inputMode="numeric"
              autoComplete="one-time-code"
              value={code}
              onChange={(e) => setCode(e.target.value)}
              required
            />
          </label>
          <button type="submit" className="primary" disabled={busy}>
            Add app
          </button>
        </form>
      ) : (
        <button type="button" onClick={start} disabled={busy}>
          Set up an authenticator app
        </button>
      )}
    </section>
  );
}
