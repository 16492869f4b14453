import { useEffect, useState } from 'react';
import type { JoinMode } from '../api/routes';
import { Link, NewTabLink, useApp } from '../app';
import { ErrorBox, formatTime, Loading, Notice, TableScroll, useLoad } from '../components/ui';
import { shortId, target } from '../lib/names';
import { formatClock } from '../lib/player';
import { joinModesOf, terminalPageUrl } from '../lib/terminal';

/** The list refreshes itself this often, so ended sessions leave it. */
const REFRESH_MS = 5000;

export function SessionsPage() {
  const { api, session } = useApp();
  const me = session?.whoami.user;
  // The API refuses a kill without session:delete; the button is not offered then.
  const mayKill = session?.whoami.permissions.killSession === true;
  const joinModes = useJoinModes();
  const [list, reload] = useLoad(() => api.listSessions(), []);
  const [confirm, setConfirm] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [message, setMessage] = useState<string | undefined>();
  const [now, setNow] = useState(() => Date.now());

  useEffect(() => {
    const t = setInterval(() => {
      setNow(Date.now());
      if (!confirm) reload();
    }, REFRESH_MS);
    return () => clearInterval(t);
  }, [reload, confirm]);

  const terminate = async (id: string) => {
    setBusy(true);
    setError(undefined);
    setMessage(undefined);
    try {
      await api.killSession(id);
      setMessage(`Session ${id} terminated.`);
      reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
      setConfirm(undefined);
    }
  };

  return (
    <>
      <h1>Active sessions</h1>
      {message ? <Notice kind="success">{message}</Notice> : null}
      {error ? <ErrorBox error={error} /> : null}
      {list.state === 'loading' ? <Loading what="sessions" /> : null}
      {list.state === 'error' ? <ErrorBox error={list.error} onRetry={reload} /> : null}
      {list.state === 'ok'
        ? list.data.unreachable.map((u) => (
            <Notice key={u.gateway}>
              Gateway {u.gateway} did not answer; its sessions are missing from this list ({u.error}).
            </Notice>
          ))
        : null}
      {list.state === 'ok' ? (
        <TableScroll label="Active sessions">
          <table className="grid" data-testid="sessions">
            <thead>
              <tr>
                <th>Started</th>
                <th>Running for</th>
                <th>User</th>
                <th>Kind</th>
                <th>Session</th>
                <th>Gateway</th>
                <th>From</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data.sessions.map((s) => (
                <tr key={s.id} data-session={s.id}>
                  <td>{formatTime(s.started)}</td>
                  <td>{formatClock(now - Date.parse(s.started))}</td>
                  <td>{s.user}</td>
                  <td>{s.kind}</td>
                  <td data-testid="session-name">
                    {target(s)}{' '}
                    <code className="session-id" title={s.id}>
                      {shortId(s.id)}
                    </code>
                    {s.command ? <code> {s.command}</code> : null}
                  </td>
                  <td>{s.gateway ?? ''}</td>
                  <td>{s.remoteAddr ?? ''}</td>
                  <td className="actions">
                    <div className="row-actions">
                      {/* An SSH session with a terminal (a pty shell or command) can be joined. */}
                      {s.kind === 'ssh' && s.interactive ? (
                        <>
                          <NewTabLink
                            to={terminalPageUrl({ kind: 'join', session: s.id, mode: 'observer' })}
                            className="button"
                          >
                            Join
                          </NewTabLink>
                          {s.user === me || joinModes.includes('peer') ? (
                            <NewTabLink
                              to={terminalPageUrl({ kind: 'join', session: s.id, mode: 'peer' })}
                              className="button"
                            >
                              Join as peer
                            </NewTabLink>
                          ) : null}
                        </>
                      ) : s.interactive ? (
                        // A kubectl exec: no terminal to join, but its recording can be followed.
                        <Link to={`/web/recordings/${encodeURIComponent(s.id)}`} className="button">
                          Watch
                        </Link>
                      ) : null}
                      {!mayKill ? null : confirm === s.id ? (
                        <>
                          <button
                            type="button"
                            className="danger"
                            disabled={busy}
                            onClick={() => terminate(s.id)}
                          >
                            Really terminate
                          </button>
                          <button type="button" onClick={() => setConfirm(undefined)}>
                            Cancel
                          </button>
                        </>
                      ) : (
                        <button
                          type="button"
                          className="danger"
                          disabled={busy}
                          onClick={() => setConfirm(s.id)}
                        >
                          Terminate
                        </button>
                      )}
                    </div>
                  </td>
                </tr>
              ))}
              {list.data.sessions.length === 0 ? (
                <tr>
                  <td colSpan={8} className="empty">
                    No active sessions on any gateway.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
        </TableScroll>
      ) : null}
      <p className="muted">
        Join opens an SSH shell session live in a terminal tab, read-only; as a peer you can type into it too
        (your roles decide who may). Watch follows a session that has no terminal to join through its
        recording. Joins are audited.
        {mayKill ? ' Terminating ends a session at once; the user sees why and the end is audited.' : null}
      </p>
    </>
  );
}

/**
 * The join modes the user's roles grant for other users' sessions, read from
 * the roles themselves; none when the user may not read roles (then only
 * their own sessions offer "Join as peer").
 */
function useJoinModes(): JoinMode[] {
  const { api, session } = useApp();
  const [modes, setModes] = useState<JoinMode[]>([]);
  // Without role:read there is nothing to read (and each refusal would be an audited denial).
  const roles = session?.whoami.permissions.getRole ? session.whoami.roles.join(',') : '';
  useEffect(() => {
    let live = true;
    Promise.all(
      roles
        .split(',')
        .filter(Boolean)
        .map((r) => api.getRole(r)),
    ).then(
      (rs) => live && setModes(joinModesOf(rs)),
      // Reading roles is an admin permission; without it the server still decides each join.
      () => undefined,
    );
    return () => {
      live = false;
    };
  }, [api, roles]);
  return modes;
}
