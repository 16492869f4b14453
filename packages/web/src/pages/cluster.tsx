import { useState } from 'react';
import { Link, useApp } from '../app';
import { formatTime, type Loaded, useLoad } from '../components/ui';

function count(l: Loaded<unknown[]>): string {
  if (l.state === 'loading') return '…';
  if (l.state === 'error') return 'n/a';
  return String(l.data.length);
}

export function ClusterPage() {
  const { api, session } = useApp();
  const [search, setSearch] = useState('');
  const [dbs] = useLoad(() => api.listDatabases(), []);
  const [kubes] = useLoad(() => api.listKubeClusters(), []);
  const [nodes] = useLoad(() => api.listNodes(), []);
  if (!session) return null;
  const { ping, whoami } = session;
  // One gateway serves one cluster today; the table is ready for more (trusted clusters).
  const clusters = [{ name: ping.cluster_name, version: ping.version, addr: ping.public_addr }];
  const t = search.trim().toLowerCase();
  const shown = clusters.filter((c) => !t || `${c.name} ${c.addr} ${c.version}`.toLowerCase().includes(t));
  return (
    <>
      <h1>Clusters</h1>
      <div className="toolbar">
        <input
          type="search"
          placeholder="Search clusters"
          aria-label="Search clusters"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
      </div>
      <table className="grid" data-testid="clusters">
        <thead>
          <tr>
            <th>Name</th>
            <th>Version</th>
            <th>Public address</th>
            <th>Nodes</th>
            <th>Databases</th>
            <th>Kubernetes clusters</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((c) => (
            <tr key={c.name}>
              <td>
                <Link to="/web/resources">{c.name}</Link>
              </td>
              <td>{c.version}</td>
              <td>
                <code>{c.addr}</code>
              </td>
              <td>{count(nodes)}</td>
              <td>{count(dbs)}</td>
              <td>{count(kubes)}</td>
            </tr>
          ))}
          {shown.length === 0 ? (
            <tr>
              <td colSpan={6} className="empty">
                No cluster matches “{search}”.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>

      <div className="columns">
        <section className="card">
          <h2>Cluster information</h2>
          <dl>
            <dt>Gatehouse version</dt>
            <dd>{ping.version}</dd>
            <dt>Public address</dt>
            <dd>
              <code>{ping.public_addr}</code>
            </dd>
            <dt>Second factor</dt>
            <dd>{ping.second_factor === 'otp' ? 'Authenticator app (TOTP)' : 'off'}</dd>
            <dt>Server time</dt>
            <dd>{formatTime(ping.server_time)}</dd>
          </dl>
        </section>
        <section className="card">
          <h2>Your session</h2>
          <dl>
            <dt>User</dt>
            <dd>{whoami.user}</dd>
            <dt>Roles</dt>
            <dd>{whoami.roles.join(', ') || 'none'}</dd>
            <dt>SSH logins</dt>
            <dd>{whoami.logins.join(', ') || 'none'}</dd>
            <dt>Expires</dt>
            <dd>{formatTime(whoami.expires)}</dd>
          </dl>
        </section>
      </div>
    </>
  );
}
