import { type FormEvent, useEffect, useMemo, useState } from 'react';
import type { AuditEvent } from '../api/routes';
import { EVENT_CODES } from '../api/routes';
import { Link, useApp } from '../app';
import { ErrorBox, formatTime, TableScroll, useLoad } from '../components/ui';
import {
  type AuditView,
  isSystemType,
  SHOW_OPTIONS,
  type Show,
  severityOf,
  shownOnPage,
  viewFromSearch,
  viewToQuery,
  viewToSearch,
} from '../lib/audit-view';
import { parseDateInput } from '../lib/dates';

const EVENT_TYPES = Object.keys(EVENT_CODES).sort();
const PAGE_SIZE = 50;

/** The session of an event whose recording the player may show (whether one exists is checked apart). */
export function recordingOf(e: AuditEvent): string | undefined {
  const r = e as unknown as Record<string, unknown>;
  const id = r.session_id;
  if (typeof id !== 'string' || !id) return undefined;
  return /^(session\.|kube\.exec\.)/.test(e.type) ? id : undefined;
}

/** What an event itself says about its session's recording (session.end, kube.exec.start), if anything. */
function saysRecorded(e: AuditEvent): boolean | undefined {
  const r = (e as unknown as Record<string, unknown>).recorded;
  return typeof r === 'boolean' ? r : undefined;
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

/**
 * The audit log. The view (filters and the open event) lives in the URL, so
 * a view can be shared and bookmarked and the back button returns to the
 * search before; the page re-reads it whenever the URL changes.
 */
export function AuditPage() {
  const { search, navigate } = useApp();
  const view = useMemo(() => viewFromSearch(new URLSearchParams(search)), [search]);
  const query = useMemo(() => viewToQuery(view, PAGE_SIZE), [view]);
  const queryKey = JSON.stringify(query);
  const [again, setAgain] = useState(0);

  const go = (v: AuditView, opts: { replace?: boolean } = {}) => {
    const q = viewToSearch(v);
    navigate(`/web/audit${q ? `?${q}` : ''}`, opts);
  };

  return (
    <>
      <h1>Audit log</h1>
      <AuditFilters
        key={search}
        view={view}
        onSearch={(v) => {
          // The same search again fetches again (new events may have come in).
          if (viewToSearch(v) === viewToSearch({ ...view, event: undefined })) setAgain((n) => n + 1);
          go(v);
        }}
      />
      <AuditResults
        key={`${queryKey}/${again}`}
        view={view}
        onSelect={(id) => go({ ...view, event: id }, { replace: true })}
      />
    </>
  );
}

function AuditFilters({ view, onSearch }: { view: AuditView; onSearch: (v: AuditView) => void }) {
  const [from, setFrom] = useState(view.from ?? '');
  const [to, setTo] = useState(view.to ?? '');
  const [type, setType] = useState(view.type ?? '');
  const [user, setUser] = useState(view.user ?? '');
  const [text, setText] = useState(view.q ?? '');
  const [show, setShow] = useState<Show>(view.show);
  const [formError, setFormError] = useState<string | undefined>();

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
    onSearch({
      from: f.iso,
      to: t.iso,
      type: type || undefined,
      user: user.trim() || undefined,
      q: text.trim() || undefined,
      show,
    });
  };

  return (
    <>
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
                {isSystemType(t) ? ' (system)' : ''}
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
        <label>
          Show
          <select name="show" value={show} onChange={(e) => setShow(e.target.value as Show)}>
            {SHOW_OPTIONS.map((o) => (
              <option key={o.value} value={o.value}>
                {o.label}
              </option>
            ))}
          </select>
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
    </>
  );
}

/** One search's pages (a new search is a new instance: its paging starts over). */
function AuditResults({ view, onSelect }: { view: AuditView; onSelect: (id: string | undefined) => void }) {
  const { api } = useApp();
  /** Cursors of the pages before the current one, for "Previous". */
  const [cursors, setCursors] = useState<(string | undefined)[]>([]);
  const [cursor, setCursor] = useState<string | undefined>();
  // A new page shows "Searching…" at once, not the previous rows.
  const [result, retry] = useLoad(
    () => api.searchAudit({ ...viewToQuery(view, PAGE_SIZE), ...(cursor ? { cursor } : {}) }),
    [api, cursor],
  );
  const events = result.state === 'ok' ? result.data.events.filter((e) => shownOnPage(view, e)) : [];
  const hidden = result.state === 'ok' ? result.data.events.length - events.length : 0;
  const recorded = useRecordings(events);
  const selected = view.event ? events.find((e) => e.id === view.event) : undefined;

  return (
    <>
      {result.state === 'loading' ? (
        <div className="loading" role="status">
          Searching…
        </div>
      ) : null}
      {result.state === 'error' ? <ErrorBox error={result.error} onRetry={retry} /> : null}
      {result.state === 'ok' ? (
        <div className={`audit-layout ${view.event ? 'with-panel' : ''}`}>
          <div className="audit-main">
            <TableScroll label="Audit events">
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
                  {events.map((e) => {
                    const sid = recordingOf(e);
                    const open = () => onSelect(e.id === view.event ? undefined : e.id);
                    return (
                      <tr
                        key={e.id}
                        className={`clickable ${e.id === view.event ? 'selected' : ''}`}
                        data-event-type={e.type}
                        data-event-id={e.id}
                        aria-selected={e.id === view.event}
                        tabIndex={0}
                        onClick={(ev) => {
                          // A click on the row's own link (Play recording) is that link's, not a selection.
                          if (!(ev.target as HTMLElement).closest('a, button')) open();
                        }}
                        onKeyDown={(k) => {
                          if (k.key === 'Enter' || k.key === ' ') {
                            k.preventDefault();
                            open();
                          }
                        }}
                      >
                        <td title={e.time}>{formatTime(e.time)}</td>
                        <td>
                          <code className={`code-${e.code.slice(-1)}`} title={severityOf(e.code)}>
                            {e.code}
                          </code>
                        </td>
                        <td>{e.type}</td>
                        <td>{e.user ?? ''}</td>
                        <td className="summary">
                          {eventSummary(e)}
                          {sid && recorded.get(sid) === true ? (
                            <>
                              {' '}
                              <Link to={`/web/recordings/${encodeURIComponent(sid)}`}>Play recording</Link>
                            </>
                          ) : null}
                        </td>
                      </tr>
                    );
                  })}
                  {events.length === 0 ? (
                    <tr>
                      <td colSpan={5} className="empty" data-testid="audit-empty">
                        No events match these filters on this page. Widen the date range, clear a filter or
                        choose "Everything" under Show.
                      </td>
                    </tr>
                  ) : null}
                </tbody>
              </table>
            </TableScroll>
            {hidden > 0 ? (
              <p className="muted">
                {hidden === 1 ? '1 info-level event is' : `${hidden} info-level events are`} not shown on this
                page (Show: warnings and errors only).
              </p>
            ) : null}
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
          </div>
          {view.event ? (
            <EventPanel
              event={selected}
              id={view.event}
              recording={
                selected && recordingOf(selected) && recorded.get(recordingOf(selected)!)
                  ? recordingOf(selected)
                  : undefined
              }
              onClose={() => onSelect(undefined)}
            />
          ) : null}
        </div>
      ) : null}
    </>
  );
}

/** The selected event, field by field and as JSON, beside the list (the list stays in place). */
function EventPanel({
  event,
  id,
  recording,
  onClose,
}: {
  event: AuditEvent | undefined;
  id: string;
  recording: string | undefined;
  onClose: () => void;
}) {
  return (
    <aside className="event-panel card" aria-label="Event details" data-testid="event-panel">
      <div className="event-panel-head">
        <h2>{event ? event.type : 'Event'}</h2>
        <button type="button" onClick={onClose} aria-label="Close event details">
          ×
        </button>
      </div>
      {event ? (
        <>
          <dl className="event-fields">
            <dt>Time</dt>
            <dd>
              <time dateTime={event.time}>{formatTime(event.time)}</time>
            </dd>
            <dt>Code</dt>
            <dd>
              <code className={`code-${event.code.slice(-1)}`}>{event.code}</code> ({severityOf(event.code)})
            </dd>
            {event.user ? (
              <>
                <dt>User</dt>
                <dd>{event.user}</dd>
              </>
            ) : null}
          </dl>
          {recording ? (
            <p>
              <Link to={`/web/recordings/${encodeURIComponent(recording)}`}>Play recording</Link>
            </p>
          ) : null}
          <pre data-testid="event-json">{JSON.stringify(event, null, 2)}</pre>
        </>
      ) : (
        <p className="muted">
          Event {id} is not on this page of results. Search with a narrower date range to find it.
        </p>
      )}
    </aside>
  );
}

/**
 * Which sessions of these events have a recording: what an event says
 * (session.end, kube.exec.start carry `recorded`), else asked once per
 * session. A session that ran no shell (file transfers, port forwards) has
 * none, and gets no "Play recording" link that would lead nowhere. The check
 * is made only where the caller may read the recording, so it causes no
 * audited denials.
 */
function useRecordings(events: AuditEvent[]): Map<string, boolean> {
  const { api, session } = useApp();
  const [checked, setChecked] = useState<Map<string, boolean>>(new Map());
  const mayReadAll = session?.whoami.permissions.getRecording === true;
  const me = session?.whoami.user;

  const said = new Map<string, boolean>();
  const ask = new Set<string>();
  for (const e of events) {
    const sid = recordingOf(e);
    if (!sid) continue;
    const r = saysRecorded(e);
    if (r !== undefined) said.set(sid, r || said.get(sid) === true);
  }
  for (const e of events) {
    const sid = recordingOf(e);
    if (sid && !said.has(sid) && (mayReadAll || e.user === me)) ask.add(sid);
  }
  const askKey = [...ask].sort().join(',');

  // biome-ignore lint/correctness/useExhaustiveDependencies: askKey names the sessions to check
  useEffect(() => {
    let live = true;
    for (const sid of askKey ? askKey.split(',') : []) {
      if (checked.has(sid)) continue;
      api.getRecording(sid).then(
        () => live && setChecked((m) => new Map(m).set(sid, true)),
        // Not found (or any other failure): no link, rather than one that leads to an error.
        () => live && setChecked((m) => new Map(m).set(sid, false)),
      );
    }
    return () => {
      live = false;
    };
  }, [api, askKey]);

  const out = new Map(checked);
  for (const [sid, r] of said) out.set(sid, r);
  return out;
}
