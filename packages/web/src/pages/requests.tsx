import { type FormEvent, useEffect, useState } from 'react';
import type { AccessRequestView } from '../api/routes';
import { useApp } from '../app';
import { CopyCommand, ErrorBox, formatTime, Loading, Notice, TableScroll, useLoad } from '../components/ui';
import { shortId } from '../lib/names';

/** The list refreshes itself this often, so a review by someone else shows without a reload. */
const REFRESH_MS = 5000;

/** "prod-db, dev" -> ["prod-db", "dev"] */
function names(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * Access requests (docs/decisions/0036-access-requests.md): the caller's own
 * requests with their reviews, a form to ask for roles, and the inbox of
 * others' pending requests the caller may review. The list is what core
 * answers (one's own and the reviewable ones); core decides every review.
 */
export function RequestsPage() {
  const { api, session } = useApp();
  const me = session?.whoami.user;
  const [list, reload] = useLoad(() => api.listAccessRequests(), []);
  const [error, setError] = useState<unknown>();
  const [message, setMessage] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const t = setInterval(() => reload(), REFRESH_MS);
    return () => clearInterval(t);
  }, [reload]);

  /** Runs one call, then shows its outcome (or the API's refusal) and reloads the list. */
  const act = async (what: () => Promise<AccessRequestView>, done: (r: AccessRequestView) => string) => {
    setBusy(true);
    setError(undefined);
    setMessage(undefined);
    try {
      setMessage(done(await what()));
      reload();
      return true;
    } catch (err) {
      setError(err);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const assumed = new Set(session?.whoami.access_requests ?? []);
  const assume = async (id: string) => {
    setBusy(true);
    setError(undefined);
    try {
      await api.assumeAccessRequest(id);
      // The app reads the session (whoami: roles, menu, permissions) afresh.
      window.location.reload();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  const mine = list.state === 'ok' ? list.data.filter((r) => r.user === me) : [];
  // Others' pending requests, and approved ones this reviewer has not reviewed (which they may still
  // deny: a revocation ends the access and the sessions using it). Core decides either way.
  const inbox =
    list.state === 'ok'
      ? list.data.filter(
          (r) =>
            r.user !== me &&
            (r.state === 'pending' || (r.state === 'approved' && !r.reviews.some((v) => v.author === me))),
        )
      : [];

  return (
    <>
      <h1>Access requests</h1>
      {message ? <Notice kind="success">{message}</Notice> : null}
      {error ? <ErrorBox error={error} /> : null}
      <RequestForm
        busy={busy}
        onSubmit={(req) =>
          act(
            () => api.createAccessRequest(req),
            (r) => `Request ${shortId(r.id)} for ${r.roles.join(', ')} sent; it is ${r.state}.`,
          )
        }
      />
      {list.state === 'loading' ? <Loading what="access requests" /> : null}
      {list.state === 'error' ? <ErrorBox error={list.error} onRetry={reload} /> : null}
      {list.state === 'ok' ? (
        <>
          {inbox.length > 0 ? (
            <section aria-label="Requests to review">
              <h2>To review</h2>
              <TableScroll label="Requests to review">
                <table className="grid" data-testid="review-inbox">
                  <thead>
                    <tr>
                      <th>Asked</th>
                      <th>User</th>
                      <th>Roles</th>
                      <th>Reason</th>
                      <th>Reviews</th>
                      <th>Ends</th>
                      <th />
                    </tr>
                  </thead>
                  <tbody>
                    {inbox.map((r) => (
                      <tr key={r.id} data-request={r.id}>
                        <td>{formatTime(r.created)}</td>
                        <td>{r.user}</td>
                        <td>{describeRoles(r)}</td>
                        <td>{r.reason}</td>
                        <td>
                          {r.state === 'approved' ? (
                            <span className="state state-approved" data-testid="inbox-state">
                              approved
                            </span>
                          ) : null}
                          <Reviews r={r} />
                        </td>
                        <td>{formatTime(r.expires)}</td>
                        <td className="actions">
                          <ReviewForm
                            busy={busy}
                            approved={r.state === 'approved'}
                            onReview={(verdict, reason) =>
                              act(
                                () => api.reviewAccessRequest(r.id, { verdict, reason }),
                                (after) =>
                                  r.state === 'approved'
                                    ? `Revoked ${r.user}'s request ${shortId(r.id)}; it is ${after.state} and the sessions using it end.`
                                    : `${verdict === 'approve' ? 'Approved' : 'Denied'} ${r.user}'s request ${shortId(r.id)}; it is ${after.state}.`,
                              )
                            }
                          />
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </TableScroll>
            </section>
          ) : null}
          <section aria-label="Your requests">
            <h2>Your requests</h2>
            <TableScroll label="Your requests">
              <table className="grid" data-testid="my-requests">
                <thead>
                  <tr>
                    <th>Asked</th>
                    <th>Roles</th>
                    <th>Reason</th>
                    <th>State</th>
                    <th>Reviews</th>
                    <th>Ends</th>
                    <th />
                  </tr>
                </thead>
                <tbody>
                  {mine.map((r) => (
                    <tr key={r.id} data-request={r.id}>
                      <td>
                        {formatTime(r.created)}{' '}
                        <code className="session-id" title={r.id}>
                          {shortId(r.id)}
                        </code>
                      </td>
                      <td>{describeRoles(r)}</td>
                      <td>{r.reason}</td>
                      <td data-testid="request-state">
                        <span className={`state state-${r.state}`}>{r.state}</span>
                        {r.resolved?.reason ? <div className="muted">{r.resolved.reason}</div> : null}
                      </td>
                      <td>
                        <Reviews r={r} />
                      </td>
                      <td>{formatTime(r.expires)}</td>
                      <td className="actions">
                        <div className="row-actions">
                          {r.state === 'approved' && !assumed.has(r.id) ? (
                            <button
                              type="button"
                              className="primary"
                              disabled={busy}
                              onClick={() => assume(r.id)}
                            >
                              Assume roles
                            </button>
                          ) : null}
                          {r.state === 'approved' && assumed.has(r.id) ? (
                            <span className="muted" data-testid="assumed">
                              In use by this session
                            </span>
                          ) : null}
                          {r.state === 'pending' || r.state === 'approved' ? (
                            <button
                              type="button"
                              className="danger"
                              disabled={busy}
                              onClick={() =>
                                act(
                                  () => api.dropAccessRequest(r.id),
                                  () => `Request ${shortId(r.id)} dropped.`,
                                )
                              }
                            >
                              Drop
                            </button>
                          ) : null}
                        </div>
                        {r.state === 'approved' ? (
                          <CopyCommand label="Use it" command={`gatehouse login --request-id ${r.id}`} />
                        ) : null}
                      </td>
                    </tr>
                  ))}
                  {mine.length === 0 ? (
                    <tr>
                      <td colSpan={7} className="empty">
                        You have asked for no access yet.
                      </td>
                    </tr>
                  ) : null}
                </tbody>
              </table>
            </TableScroll>
          </section>
        </>
      ) : null}
      <p className="muted">
        Assume roles gives this browser session an approved request's roles until the request ends; on the
        command line, <code>gatehouse login --request-id ID</code> does the same for certificates. When the
        request is denied, dropped or expires, the session that used it ends and you sign in again with your
        standing roles. Dropping a request ends the access it gave at once, live sessions included; so does a
        reviewer's Revoke (a denial of an approved request). You cannot review your own request, and each
        reviewer reviews once.
      </p>
    </>
  );
}

function describeRoles(r: AccessRequestView): string {
  const res = r.resources?.map((x) => `${x.kind}/${x.name}`) ?? [];
  return res.length ? `${r.roles.join(', ')} on ${res.join(', ')}` : r.roles.join(', ');
}

function Reviews({ r }: { r: AccessRequestView }) {
  const need = `${r.reviews.filter((v) => v.verdict === 'approve').length}/${r.thresholds.approve} approvals`;
  return (
    <>
      <span className="muted">{need}</span>
      <ul className="reviews">
        {r.reviews.map((v) => (
          <li key={`${v.author}-${v.time}`} data-testid="review">
            {v.author} {v.verdict === 'approve' ? 'approved' : 'denied'}
            {v.reason ? `: ${v.reason}` : ''}
          </li>
        ))}
      </ul>
    </>
  );
}

function RequestForm({
  busy,
  onSubmit,
}: {
  busy: boolean;
  onSubmit: (req: {
    roles?: string[];
    resources?: string[];
    reason: string;
    ttl?: string;
  }) => Promise<boolean>;
}) {
  // The Resources page links here with ?resource=KIND/NAME.
  const [resource, setResource] = useState(
    () => new URLSearchParams(window.location.search).get('resource') ?? '',
  );
  const [roles, setRoles] = useState('');
  const [reason, setReason] = useState('');
  const [ttl, setTtl] = useState('1h');

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await onSubmit({
      ...(names(roles).length ? { roles: names(roles) } : {}),
      ...(names(resource).length ? { resources: names(resource) } : {}),
      reason,
      ...(ttl.trim() ? { ttl: ttl.trim() } : {}),
    });
    if (ok) {
      setRoles('');
      setReason('');
      setResource('');
    }
  };

  return (
    <form className="card filters" onSubmit={submit} aria-label="Request access">
      <label>
        Roles
        <input name="roles" value={roles} onChange={(e) => setRoles(e.target.value)} placeholder="prod-db" />
      </label>
      <label>
        Resources
        <input
          name="resources"
          value={resource}
          onChange={(e) => setResource(e.target.value)}
          placeholder="db/orders"
        />
      </label>
      <label>
        Reason
        <input
          name="reason"
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          placeholder="INC-4211: fix stuck orders"
        />
      </label>
      <label>
        For
        <input name="ttl" value={ttl} onChange={(e) => setTtl(e.target.value)} placeholder="1h" size={6} />
      </label>
      <button type="submit" className="primary" disabled={busy}>
        Request access
      </button>
    </form>
  );
}

function ReviewForm({
  busy,
  approved,
  onReview,
}: {
  busy: boolean;
  /** Already approved: only a denial (a revocation) is left. */
  approved: boolean;
  onReview: (verdict: 'approve' | 'deny', reason: string) => Promise<boolean>;
}) {
  const [reason, setReason] = useState('');
  const review = async (verdict: 'approve' | 'deny') => {
    if (await onReview(verdict, reason)) setReason('');
  };
  return (
    <div className="row-actions">
      <input
        aria-label="Review reason"
        value={reason}
        onChange={(e) => setReason(e.target.value)}
        placeholder="reason"
      />
      {approved ? null : (
        <button type="button" className="primary" disabled={busy} onClick={() => review('approve')}>
          Approve
        </button>
      )}
      <button type="button" className="danger" disabled={busy} onClick={() => review('deny')}>
        {approved ? 'Revoke' : 'Deny'}
      </button>
    </div>
  );
}
