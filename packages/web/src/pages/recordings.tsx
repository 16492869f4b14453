import { type FormEvent, useState } from 'react';
import type { RecordingQuery } from '../api/routes';
import { Link, NewTabLink, useApp } from '../app';
import { ErrorBox, formatTime, Loading, TableScroll, useLoad } from '../components/ui';
import { parseDateInput } from '../lib/dates';
import { desktopPlaybackUrl } from '../lib/desktop';
import { shortId, target } from '../lib/names';
import { formatClock } from '../lib/player';

export function RecordingsPage() {
  const { api } = useApp();
  const [user, setUser] = useState('');
  const [since, setSince] = useState('');
  const [formError, setFormError] = useState<string | undefined>();
  const [query, setQuery] = useState<RecordingQuery>({ limit: 200 });
  const [list, reload] = useLoad(() => api.listRecordings(query), [query]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const from = parseDateInput(since, 'from');
    if (!from.ok) {
      setFormError(`Since: ${from.message}`);
      return;
    }
    setFormError(undefined);
    setQuery({
      limit: 200,
      ...(user.trim() ? { user: user.trim() } : {}),
      ...(from.iso ? { from: from.iso } : {}),
    });
  };

  return (
    <>
      <h1>Session recordings</h1>
      <form className="card filters" onSubmit={submit} aria-label="Recording filters">
        <label>
          User
          <input name="user" value={user} onChange={(e) => setUser(e.target.value)} />
        </label>
        <label>
          Since
          <input
            name="since"
            placeholder="YYYY-MM-DD [HH:MM]"
            value={since}
            onChange={(e) => setSince(e.target.value)}
          />
        </label>
        <button type="submit" className="primary">
          Search
        </button>
      </form>
      {formError ? (
        <div className="error" role="alert">
          <strong>{formError}</strong>
        </div>
      ) : null}
      {list.state === 'loading' ? <Loading what="recordings" /> : null}
      {list.state === 'error' ? <ErrorBox error={list.error} onRetry={reload} /> : null}
      {list.state === 'ok' ? (
        <TableScroll label="Recordings">
          <table className="grid" data-testid="recordings">
            <thead>
              <tr>
                <th>Started</th>
                <th>User</th>
                <th>Session</th>
                <th>Kind</th>
                <th>Length</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data.map((r) => (
                <tr key={r.session_id} data-recording={r.session_id}>
                  <td>{formatTime(r.started)}</td>
                  <td>{r.user}</td>
                  <td data-testid="recording-name">
                    {target(r)}{' '}
                    <code className="session-id" title={r.session_id}>
                      {shortId(r.session_id)}
                    </code>
                    {r.command ? <code> {r.command}</code> : <span className="muted"> shell</span>}
                  </td>
                  <td>{r.kind}</td>
                  <td>
                    {r.ended ? (
                      formatClock(Date.parse(r.ended) - Date.parse(r.started))
                    ) : (
                      <span className="badge warn">live</span>
                    )}
                  </td>
                  <td>
                    {r.kind === 'desktop' ? (
                      // Desktop recordings play in the desktop client (a page load of its own: its CSP differs).
                      <NewTabLink
                        to={desktopPlaybackUrl(r.session_id)}
                        label={`Play ${target(r)} ${shortId(r.session_id)}, started ${formatTime(r.started)}`}
                      >
                        Play
                      </NewTabLink>
                    ) : (
                      <Link
                        to={`/web/recordings/${encodeURIComponent(r.session_id)}`}
                        label={`Play ${target(r)} ${shortId(r.session_id)}, started ${formatTime(r.started)}`}
                      >
                        Play
                      </Link>
                    )}
                  </td>
                </tr>
              ))}
              {list.data.length === 0 ? (
                <tr>
                  <td colSpan={6} className="empty">
                    No recordings match. Interactive SSH and kubectl exec sessions are recorded when they end
                    or as they run.
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
