import { Fragment, useMemo, useState } from 'react';
import { Link, NewTabLink, useApp } from '../app';
import { CopyCommand, ErrorBox, Labels, Loading, useLoad } from '../components/ui';
import { desktopPageUrl } from '../lib/desktop';
import {
  connectCommands,
  filterResources,
  formatLabelFilter,
  type LabelFilter,
  labelIndex,
  paginate,
  parseLabelFilter,
  type Resource,
  type ResourceKind,
  type SortDir,
  type SortKey,
  sortResources,
} from '../lib/resources';
import { concreteLogins, terminalPageUrl } from '../lib/terminal';

const KIND_NAMES: Record<ResourceKind, string> = {
  node: 'Node',
  db: 'Database',
  kube: 'Kubernetes',
  desktop: 'Desktop',
};
const TAB_NAMES: Record<ResourceKind | 'all', string> = {
  all: 'All',
  node: 'Nodes',
  db: 'Databases',
  kube: 'Kubernetes clusters',
  desktop: 'Desktops',
};

interface Loaded {
  items: Resource[];
  /** Lists that failed to load, with why: shown above the table, the rest still works. */
  failures: { what: string; error: unknown }[];
}

/** A concrete login for the ssh command: the node's allowed logins (user listing) or the user's own. */
function pickLogin(r: Resource, mine: string[]): string | undefined {
  const concrete = (l: string) => !/[*{}^$]/.test(l);
  return (r.logins ?? []).find(concrete) ?? mine.find(concrete);
}

export function ResourcesPage() {
  const { api, session } = useApp();
  const [data, reload] = useLoad(async (): Promise<Loaded> => {
    const [nodes, dbs, kubes, desktops] = await Promise.allSettled([
      api.listNodes(),
      api.listDatabases(),
      api.listKubeClusters(),
      api.listDesktops(),
    ]);
    const items: Resource[] = [];
    const failures: Loaded['failures'] = [];
    if (nodes.status === 'fulfilled') {
      for (const n of nodes.value) {
        items.push({
          kind: 'node',
          name: n.name,
          labels: n.labels,
          description: n.description,
          detail: n.addr,
          logins: n.allowed?.logins,
        });
      }
    } else failures.push({ what: 'nodes', error: nodes.reason });
    if (dbs.status === 'fulfilled') {
      for (const d of dbs.value)
        items.push({
          kind: 'db',
          name: d.name,
          labels: d.labels,
          description: d.description,
          detail: d.protocol,
          protocol: d.protocol,
          dbUsers: d.allowed?.db_users,
        });
    } else failures.push({ what: 'databases', error: dbs.reason });
    if (kubes.status === 'fulfilled') {
      for (const k of kubes.value)
        items.push({
          kind: 'kube',
          name: k.name,
          labels: k.labels,
          description: k.description,
          detail: k.context,
        });
    } else failures.push({ what: 'Kubernetes clusters', error: kubes.reason });
    if (desktops.status === 'fulfilled') {
      for (const d of desktops.value)
        items.push({
          kind: 'desktop',
          name: d.name,
          labels: d.labels,
          description: d.description,
          detail: d.addr,
          logins: d.allowed?.logins ?? d.logins,
        });
    } else failures.push({ what: 'desktops', error: desktops.reason });
    return { items, failures };
  }, []);

  const [kind, setKind] = useState<ResourceKind | 'all'>('all');
  const [search, setSearch] = useState('');
  const [labelText, setLabelText] = useState('');
  const [labels, setLabels] = useState<LabelFilter[]>([]);
  const [sort, setSort] = useState<{ key: SortKey; dir: SortDir }>({ key: 'name', dir: 'asc' });
  const [page, setPage] = useState(0);
  const [size, setSize] = useState(25);
  const [open, setOpen] = useState<string | undefined>();

  const all = data.state === 'ok' ? data.data.items : [];
  const ofKind = useMemo(() => (kind === 'all' ? all : all.filter((r) => r.kind === kind)), [all, kind]);
  const filtered = useMemo(() => filterResources(ofKind, { search, labels }), [ofKind, search, labels]);
  const sorted = useMemo(() => sortResources(filtered, sort.key, sort.dir), [filtered, sort]);
  const shown = paginate(sorted, page, size);
  const suggestions = useMemo(() => {
    const out: string[] = [];
    for (const [k, vs] of labelIndex(ofKind)) for (const v of vs) out.push(`${k}=${v}`);
    return out;
  }, [ofKind]);

  const addFilter = (f: LabelFilter) => {
    setLabels((ls) => [...ls.filter((l) => formatLabelFilter(l) !== formatLabelFilter(f)), f]);
    setPage(0);
  };
  const addLabel = () => {
    const f = parseLabelFilter(labelText);
    if (!f) return;
    addFilter(f);
    setLabelText('');
  };
  const sortBy = (key: SortKey) => {
    setSort((s) => ({ key, dir: s.key === key && s.dir === 'asc' ? 'desc' : 'asc' }));
  };
  const arrow = (key: SortKey) => (sort.key === key ? (sort.dir === 'asc' ? ' ▲' : ' ▼') : '');
  const rowKey = (r: Resource) => `${r.kind}/${r.name}`;
  const myLogins = session?.whoami.logins ?? [];

  if (data.state === 'loading') return <Loading what="resources" />;
  if (data.state === 'error') return <ErrorBox error={data.error} onRetry={reload} />;

  return (
    <>
      <h1>Resources</h1>
      <p className="muted">
        These are the resources your roles reach. For others, or for more roles for a while,{' '}
        <Link to="/web/requests">request access</Link>.
      </p>
      {data.data.failures.map((f) => (
        <div key={f.what} className="partial">
          <span>Could not list {f.what}:</span>
          <ErrorBox error={f.error} />
        </div>
      ))}
      <div className="tabs" role="tablist">
        {(['all', 'node', 'db', 'kube', 'desktop'] as const).map((k) => (
          <button
            key={k}
            type="button"
            role="tab"
            aria-selected={kind === k}
            className={kind === k ? 'active' : ''}
            onClick={() => {
              setKind(k);
              setPage(0);
            }}
          >
            {TAB_NAMES[k]} ({k === 'all' ? all.length : all.filter((r) => r.kind === k).length})
          </button>
        ))}
      </div>
      <div className="toolbar">
        <input
          type="search"
          placeholder="Search name, labels, description"
          aria-label="Search resources"
          value={search}
          onChange={(e) => {
            setSearch(e.target.value);
            setPage(0);
          }}
        />
        <form
          className="inline"
          onSubmit={(e) => {
            e.preventDefault();
            addLabel();
          }}
        >
          <input
            list="label-suggestions"
            placeholder="Label filter, e.g. env=prod"
            aria-label="Label filter"
            value={labelText}
            onChange={(e) => setLabelText(e.target.value)}
          />
          <datalist id="label-suggestions">
            {suggestions.map((s) => (
              <option key={s} value={s} />
            ))}
          </datalist>
          <button type="submit">Add filter</button>
        </form>
        {labels.map((l) => (
          <span key={formatLabelFilter(l)} className="chip">
            {formatLabelFilter(l)}
            <button
              type="button"
              aria-label={`Remove filter ${formatLabelFilter(l)}`}
              onClick={() => {
                setLabels((ls) => ls.filter((x) => x !== l));
                setPage(0);
              }}
            >
              ×
            </button>
          </span>
        ))}
      </div>
      <table className="grid scroll-narrow" data-testid="resources">
        <thead>
          <tr>
            <th>
              <button type="button" className="sort" onClick={() => sortBy('kind')}>
                Kind{arrow('kind')}
              </button>
            </th>
            <th>
              <button type="button" className="sort" onClick={() => sortBy('name')}>
                Name{arrow('name')}
              </button>
            </th>
            <th>
              <button type="button" className="sort" onClick={() => sortBy('detail')}>
                Type / address{arrow('detail')}
              </button>
            </th>
            <th>Labels</th>
            <th>Description</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {shown.items.map((r) => (
            <Fragment key={rowKey(r)}>
              <tr data-resource={r.name}>
                <td>{KIND_NAMES[r.kind]}</td>
                <td className="name">{r.name}</td>
                <td>{r.detail ?? ''}</td>
                <td>
                  <Labels labels={r.labels} onPick={(key, value) => addFilter({ key, value })} />
                </td>
                <td>{r.description ?? ''}</td>
                <td>
                  <div className="row-actions">
                    <button
                      type="button"
                      aria-expanded={open === rowKey(r)}
                      onClick={() => setOpen(open === rowKey(r) ? undefined : rowKey(r))}
                    >
                      Connect
                    </button>
                    {/* More access to this one resource (other logins, users, groups): the request
                        form with it filled in; core decides what the request may give. */}
                    <Link
                      to={`/web/requests?resource=${encodeURIComponent(rowKey(r))}`}
                      className="button"
                      label={`Request access to ${rowKey(r)}`}
                    >
                      Request access
                    </Link>
                  </div>
                </td>
              </tr>
              {open === rowKey(r) ? (
                <tr className="detail">
                  <td colSpan={6}>
                    {r.kind === 'node' ? <TerminalLinks node={r.name} logins={r.logins ?? myLogins} /> : null}
                    {r.kind === 'desktop' ? <DesktopLinks desktop={r.name} logins={r.logins ?? []} /> : null}
                    {connectCommands(r, { login: pickLogin(r, myLogins) }).map((s) => (
                      <CopyCommand key={s.command} label={s.label} command={s.command} />
                    ))}
                  </td>
                </tr>
              ) : null}
            </Fragment>
          ))}
          {shown.total === 0 ? (
            <tr>
              <td colSpan={6} className="empty">
                {all.length === 0 ? 'No resources you can reach yet.' : 'No resource matches these filters.'}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <div className="pager">
        <button type="button" disabled={shown.page === 0} onClick={() => setPage(shown.page - 1)}>
          Previous
        </button>
        <span data-testid="page-info">
          Page {shown.page + 1} of {shown.pages} ({shown.total} {shown.total === 1 ? 'resource' : 'resources'}
          )
        </span>
        <button
          type="button"
          disabled={shown.page >= shown.pages - 1}
          onClick={() => setPage(shown.page + 1)}
        >
          Next
        </button>
        <label className="inline">
          Per page
          <select
            value={size}
            onChange={(e) => {
              setSize(Number(e.target.value));
              setPage(0);
            }}
          >
            {[25, 50, 100, 250].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </div>
    </>
  );
}

/** "Open the desktop" in a new browser tab, one link per Windows login the user may use there. */
function DesktopLinks({ desktop, logins }: { desktop: string; logins: string[] }) {
  const usable = concreteLogins(logins);
  return (
    <div className="command">
      <div className="command-label">Open the desktop in the browser (new tab)</div>
      <div className="row-actions">
        {usable.map((login) => (
          <NewTabLink key={login} to={desktopPageUrl(desktop, login)} className="button primary">
            {login} on {desktop}
          </NewTabLink>
        ))}
        {usable.length === 0 ? <span>No Windows login is allowed for you here.</span> : null}
      </div>
    </div>
  );
}

/** "Open a terminal" in a new browser tab, one link per login the user may use on the node. */
function TerminalLinks({ node, logins }: { node: string; logins: string[] }) {
  const usable = concreteLogins(logins);
  return (
    <div className="command">
      <div className="command-label">Open a terminal in the browser (new tab)</div>
      <div className="row-actions">
        {usable.map((login) => (
          <NewTabLink
            key={login}
            to={terminalPageUrl({ kind: 'shell', node, login })}
            className="button primary"
          >
            {login}@{node}
          </NewTabLink>
        ))}
        {usable.length === 0 ? (
          <NewTabLink to={terminalPageUrl()} className="button">
            New terminal (choose the login)
          </NewTabLink>
        ) : null}
      </div>
    </div>
  );
}
