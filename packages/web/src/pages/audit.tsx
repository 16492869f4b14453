import { type FormEvent, Fragment, useState } from 'react';
import { type AuditEvent, type AuditQuery, EVENT_CODES } from '../api/routes';
import { Link, useApp } from '../app';
import { ErrorBox, formatTime, useLoad } from '../components/ui';
import { parseDateInput } from '../lib/dates';

const EVENT_TYPES = Object.keys(EVENT_CODES).sort();
const PAGE_SIZE = 50;

/** Events of an interactive session whose recording the player can show. */
export function recordingOf(e: AuditEvent): string | undefined {
  const r = e as unknown as Record<string, unknown>;
  const id = r.session_id;
  if (typeof id !== 'string' || !id) return undefined;
  return /^(session\.|kube\.exec\.)/.test(e.type) ? id : undefined;
}

/** A one-line summary of what the event is about. */
export function eventSummary(e: AuditEvent): string {
  const r = e as unknown as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of [
    'name',
    'server',
    'db_service',
    'kube_cluster',
    'login',
    'resource',
    'path',
    'reason',
    'error',
    'message',
  ]) {
    const v = r[k];
    if (typeof v === 'string' && v) parts.push(`${k}=${v}`);
  }
  if (r.success === false) parts.unshift('failed');
  return parts.join(' · ');
}

export function AuditPage() {
  const { api } = useApp();
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [type, setType] = useState('');
  const [user, setUser] = useState('');
  const [text, setText] = useState('');
  const [formError, setFormError] = useState<string | undefined>();
  const [query, setQuery] = useState<AuditQuery>({ limit: PAGE_SIZE });
  /** Cursors of the pages before the current one, for "Previous". */
  const [cursors, setCursors] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string | undefined>();
  const [open, setOpen] = useState<Set<string>>(new Set());
  // A new search or page shows "Searching…" at once, not the previous rows under the new filters.
  const [result, retry] = useLoad(
    () => api.searchAudit({ ...query, ...(cursor ? { cursor } : {}) }),
    [api, query, cursor],
  );

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const f = parseDateInput(from, 'from');
    const t = parseDateInput(to, 'to');
    if (!f.ok || !t.ok) {
      setFormError(!f.ok ? `From: ${f.message}` : !t.ok ? `To: ${t.message}` : undefined);
      return;
    }
    if (f.iso && t.iso && f.iso > t.iso) {
      setFormError('From is after To: swap them or widen the range');
      return;
    }
    setFormError(undefined);
    const q: AuditQuery = { limit: PAGE_SIZE };
    if (f.iso) q.from = f.iso;
    if (t.iso) q.to = t.iso;
    if (type) q.types = [type];
    if (user.trim()) q.user = user.trim();
    if (text.trim()) q.q = text.trim();
    setCursors([]);
    setCursor(undefined);
    setOpen(new Set());
    setQuery(q);
  };

  const toggle = (id: string) =>
    setOpen((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });

  return (
    <>
      <h1>Audit log</h1>
      <form className="filters card" onSubmit={submit} aria-label="Audit filters">
        <label>
          From
          <input
            name="from"
            placeholder="YYYY-MM-DD [HH:MM]"
            value={from}
            onChange={(e) => setFrom(e.target.value)}
          />
        </label>
        <label>
          To
          <input
            name="to"
            placeholder="YYYY-MM-DD [HH:MM]"
            value={to}
            onChange={(e) => setTo(e.target.value)}
          />
        </label>
        <label>
          Event type
          <select name="type" value={type} onChange={(e) => setType(e.target.value)}>
            <option value="">Any</option>
            {EVENT_TYPES.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label>
          User
          <input name="user" value={user} onChange={(e) => setUser(e.target.value)} />
        </label>
        <label className="grow">
          Text
          <input
            name="q"
            placeholder="Words in the event"
            value={text}
            onChange={(e) => setText(e.target.value)}
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
      {result.state === 'loading' ? (
        <div className="loading" role="status">
          Searching…
        </div>
      ) : null}
      {result.state === 'error' ? <ErrorBox error={result.error} onRetry={retry} /> : null}
      {result.state === 'ok' ? (
        <>
          <table className="grid audit" data-testid="audit-events">
            <thead>
              <tr>
                <th>Time</th>
                <th>Code</th>
                <th>Type</th>
                <th>User</th>
                <th>Details</th>
              </tr>
            </thead>
            <tbody>
              {result.data.events.map((e) => (
                <Fragment key={e.id}>
                  <tr
                    className="clickable"
                    data-event-type={e.type}
                    aria-expanded={open.has(e.id)}
                    tabIndex={0}
                    onClick={() => toggle(e.id)}
                    onKeyDown={(k) => {
                      if (k.key === 'Enter' || k.key === ' ') {
                        k.preventDefault();
                        toggle(e.id);
                      }
                    }}
                  >
                    <td title={e.time}>{formatTime(e.time)}</td>
                    <td>
                      <code className={`code-${e.code.slice(-1)}`}>{e.code}</code>
                    </td>
                    <td>{e.type}</td>
                    <td>{e.user ?? ''}</td>
                    <td className="summary">
                      {eventSummary(e)}
                      {recordingOf(e) ? (
                        <>
                          {' '}
                          <Link to={`/web/recordings/${encodeURIComponent(recordingOf(e)!)}`}>
                            Play recording
                          </Link>
                        </>
                      ) : null}
                    </td>
                  </tr>
                  {open.has(e.id) ? (
                    <tr className="detail">
                      <td colSpan={5}>
                        <pre data-testid="event-json">{JSON.stringify(e, null, 2)}</pre>
                      </td>
                    </tr>
                  ) : null}
                </Fragment>
              ))}
              {result.data.events.length === 0 ? (
                <tr>
                  <td colSpan={5} className="empty" data-testid="audit-empty">
                    No events match these filters. Widen the date range or clear a filter.
                  </td>
                </tr>
              ) : null}
            </tbody>
          </table>
          <div className="pager">
            <button
              type="button"
              disabled={cursors.length === 0}
              onClick={() => {
                setCursor(cursors[cursors.length - 1]);
                setCursors((c) => c.slice(0, -1));
              }}
            >
              Previous
            </button>
            <span>Page {cursors.length + 1}</span>
            <button
              type="button"
              disabled={!result.data.next_cursor}
              onClick={() => {
                setCursors((c) => [...c, cursor]);
                setCursor(result.data.next_cursor);
              }}
            >
              Next
            </button>
          </div>
        </>
      ) : null}
    </>
  );
}
