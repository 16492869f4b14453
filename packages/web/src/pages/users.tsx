import { type FormEvent, useState } from 'react';
import type { TokenView, UserView } from '../api/routes';
import { useApp } from '../app';
import { CopyCommand, ErrorBox, formatTime, Loading, Notice, TableScroll, useLoad } from '../components/ui';

/** The browser link for an invite or reset token (served by this same gateway). */
export function inviteLink(origin: string, token: string): string {
  return `${origin}/web/invite/${encodeURIComponent(token)}`;
}

function splitList(s: string): string[] {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

export function UsersPage() {
  const { api, session } = useApp();
  // Only what the caller's roles grant is offered (core refuses the rest anyway).
  const may = session?.whoami.permissions;
  const [users, reload] = useLoad(() => api.listUsers(), []);
  const [name, setName] = useState('');
  const [roles, setRoles] = useState('access');
  const [logins, setLogins] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [token, setToken] = useState<TokenView | undefined>();
  const [message, setMessage] = useState<string | undefined>();
  const [confirmDelete, setConfirmDelete] = useState<string | undefined>();

  const act = async (what: () => Promise<unknown>, done: string) => {
    setBusy(true);
    setError(undefined);
    setMessage(undefined);
    try {
      await what();
      setMessage(done);
      reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const create = (e: FormEvent) => {
    e.preventDefault();
    setToken(undefined);
    void act(async () => {
      const l = splitList(logins);
      const r = await api.createUser({
        name: name.trim(),
        roles: splitList(roles),
        ...(l.length > 0 ? { traits: { logins: l } } : {}),
      });
      setToken(r.token);
      setName('');
      setLogins('');
    }, `User ${name.trim()} created.`);
  };

  const row = (u: UserView) => (
    <tr key={u.name} data-user={u.name}>
      <td className="name">{u.name}</td>
      <td>{u.roles.join(', ')}</td>
      <td>{(u.traits.logins ?? []).join(', ')}</td>
      <td>{u.hasPassword ? 'set' : <span className="muted">invite pending</span>}</td>
      <td>
        {u.mfaDevices > 0 ? (
          `${u.mfaDevices} device${u.mfaDevices === 1 ? '' : 's'}`
        ) : (
          <span className="muted">none</span>
        )}
      </td>
      <td>{u.locked ? <span className="badge warn">locked</span> : 'active'}</td>
      <td>{formatTime(u.createdAt)}</td>
      <td className="actions">
        <div className="row-actions">
          {u.locked ? (
            !may?.unlockUser ? null : (
              <button
                type="button"
                disabled={busy}
                onClick={() => act(() => api.unlockUser(u.name), `${u.name} unlocked.`)}
              >
                Unlock
              </button>
            )
          ) : !may?.lockUser ? null : (
            <button
              type="button"
              disabled={busy}
              onClick={() =>
                act(() => api.lockUser(u.name, { message: 'locked from the web UI' }), `${u.name} locked.`)
              }
            >
              Lock
            </button>
          )}
          {may?.resetUser ? (
            <button
              type="button"
              disabled={busy}
              onClick={() => {
                setToken(undefined);
                void act(
                  async () => setToken(await api.resetUser(u.name)),
                  `Reset link for ${u.name} created.`,
                );
              }}
            >
              Reset
            </button>
          ) : null}
          {!may?.deleteUser ? null : confirmDelete === u.name ? (
            <>
              <button
                type="button"
                className="danger"
                disabled={busy}
                onClick={() => {
                  setConfirmDelete(undefined);
                  void act(() => api.deleteUser(u.name), `${u.name} deleted.`);
                }}
              >
                Really delete
              </button>
              <button type="button" onClick={() => setConfirmDelete(undefined)}>
                Cancel
              </button>
            </>
          ) : (
            <button type="button" className="danger" disabled={busy} onClick={() => setConfirmDelete(u.name)}>
              Delete
            </button>
          )}
        </div>
      </td>
    </tr>
  );

  return (
    <>
      <h1>Users</h1>
      {may?.createUser ? (
        <form className="card filters" onSubmit={create} aria-label="Add user">
          <label>
            Name
            <input name="name" value={name} onChange={(e) => setName(e.target.value)} required />
          </label>
          <label>
            Roles
            <input
              name="roles"
              value={roles}
              onChange={(e) => setRoles(e.target.value)}
              placeholder="access, dev"
            />
          </label>
          <label>
            SSH logins
            <input
              name="logins"
              value={logins}
              onChange={(e) => setLogins(e.target.value)}
              placeholder="ubuntu, alice"
            />
          </label>
          <button type="submit" className="primary" disabled={busy}>
            Add user
          </button>
        </form>
      ) : null}
      {message ? <Notice kind="success">{message}</Notice> : null}
      {error ? <ErrorBox error={error} /> : null}
      {token ? (
        <section className="card" data-testid="invite">
          <h2>
            {token.kind === 'reset' ? 'Reset' : 'Invite'} link for {token.user}
          </h2>
          <p>
            Send this link to {token.user}; it works once and expires {formatTime(token.expires)}.
          </p>
          <CopyCommand label="In a browser" command={inviteLink(window.location.origin, token.token)} />
          {token.command ? (
            <CopyCommand label="Or with the command line client" command={token.command} />
          ) : null}
        </section>
      ) : null}
      {users.state === 'loading' ? <Loading what="users" /> : null}
      {users.state === 'error' ? <ErrorBox error={users.error} onRetry={reload} /> : null}
      {users.state === 'ok' ? (
        <TableScroll label="Users">
          <table className="grid" data-testid="users">
            <thead>
              <tr>
                <th>Name</th>
                <th>Roles</th>
                <th>Logins</th>
                <th>Password</th>
                <th>Second factor</th>
                <th>Status</th>
                <th>Created</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {users.data.map(row)}
              {users.data.length === 0 ? (
                <tr>
                  <td colSpan={8} className="empty">
                    No users yet.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </TableScroll>
      ) : null}
    </>
  );
}
