import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { auditQueryString, fillPath, GatehouseClient, parseHostPort } from './client.js';
import { ADMIN_ROUTES } from './types.js';

interface Seen {
  method: string;
  url: string;
  body: string;
  contentType: string | undefined;
  clientCn: string | undefined;
}

/** CA, server cert for 127.0.0.1, client cert signed by the same CA, and a foreign CA; all by the real openssl. */
function makePki(dir: string) {
  const o = (...a: string[]) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
  const key = (n: string) => o('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${n}.key`);
  for (const ca of ['ca', 'other']) {
    key(ca);
    o('req', '-x509', '-new', '-key', `${ca}.key`, '-subj', `/CN=${ca}`, '-days', '2', '-out', `${ca}.crt`);
  }
  writeFileSync(join(dir, 'srv.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  writeFileSync(join(dir, 'cli.cnf'), 'extendedKeyUsage=clientAuth\n');
  for (const [n, cn, ext] of [
    ['srv', 'proxy', 'srv.cnf'],
    ['cli', 'alice', 'cli.cnf'],
  ] as const) {
    key(n);
    o('req', '-new', '-key', `${n}.key`, '-subj', `/CN=${cn}`, '-out', `${n}.csr`);
    o(
      'x509',
      '-req',
      '-in',
      `${n}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      ext,
      '-out',
      `${n}.crt`,
    );
  }
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    ca: r('ca.crt'),
    other: r('other.crt'),
    srvCert: r('srv.crt'),
    srvKey: r('srv.key'),
    cliCert: r('cli.crt'),
    cliKey: r('cli.key'),
  };
}

describe('GatehouseClient', () => {
  let dir: string;
  let pki: ReturnType<typeof makePki>;
  let server: https.Server;
  let proxy: string;
  let seen: Seen[];
  let reply: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  let client: GatehouseClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-client-'));
    pki = makePki(dir);
    server = https.createServer(
      { key: pki.srvKey, cert: pki.srvCert, ca: pki.ca, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const sock = req.socket as tls.TLSSocket;
          const peer = sock.authorized ? sock.getPeerCertificate() : undefined;
          seen.push({
            method: req.method ?? '',
            url: req.url ?? '',
            body: Buffer.concat(chunks).toString('utf8'),
            contentType: req.headers['content-type'],
            clientCn: peer?.subject?.CN as string | undefined,
          });
          reply(req, res);
        });
      },
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    proxy = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new GatehouseClient({ proxy, caPem: [pki.ca], certPem: pki.cliCert, keyPem: pki.cliKey });
  });

  afterAll(async () => {
    client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    seen = [];
    reply = (req, res) => {
      if (req.method === 'DELETE') {
        res.writeHead(204).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echo: req.url }));
    };
  });

  it('maps every admin method onto ADMIN_ROUTES with encoded path params and JSON bodies', async () => {
    const calls: [keyof typeof ADMIN_ROUTES, () => Promise<unknown>, string, unknown][] = [
      ['listUsers', () => client.listUsers(), '/v1/users', undefined],
      ['getUser', () => client.getUser('a/b c'), '/v1/users/a%2Fb%20c', undefined],
      [
        'createUser',
        () => client.createUser({ name: 'bob', roles: ['access'], traits: { logins: ['root'] } }),
        '/v1/users',
        { name: 'bob', roles: ['access'], traits: { logins: ['root'] } },
      ],
      ['updateUser', () => client.updateUser('bob', { roles: ['x'] }), '/v1/users/bob', { roles: ['x'] }],
      ['deleteUser', () => client.deleteUser('bob'), '/v1/users/bob', undefined],
      ['resetUser', () => client.resetUser('bob'), '/v1/users/bob/reset', {}],
      ['lockUser', () => client.lockUser('bob', { ttl: '1h' }), '/v1/users/bob/lock', { ttl: '1h' }],
      ['unlockUser', () => client.unlockUser('bob'), '/v1/users/bob/unlock', {}],
      ['listRoles', () => client.listRoles(), '/v1/roles', undefined],
      ['getRole', () => client.getRole('dev'), '/v1/roles/dev', undefined],
      [
        'putRole',
        () => client.putRole('kind: role\n', { create: true }),
        '/v1/roles',
        { text: 'kind: role\n', create: true },
      ],
      ['deleteRole', () => client.deleteRole('dev'), '/v1/roles/dev', undefined],
      ['lintRole', () => client.lintRole('x: 1'), '/v1/roles/lint', { text: 'x: 1' }],
      ['listLocks', () => client.listLocks(), '/v1/locks', undefined],
      [
        'createLock',
        () => client.createLock({ target: { role: 'dev' }, message: 'm' }),
        '/v1/locks',
        { target: { role: 'dev' }, message: 'm' },
      ],
      ['deleteLock', () => client.deleteLock('l-1'), '/v1/locks/l-1', undefined],
      ['listDatabases', () => client.listDatabases(), '/v1/databases', undefined],
      [
        'addDatabase',
        () =>
          client.addDatabase({
            name: 'orders',
            protocol: 'postgres',
            uri: 'db:5432',
            labels: { env: 'dev' },
          }),
        '/v1/databases',
        { name: 'orders', protocol: 'postgres', uri: 'db:5432', labels: { env: 'dev' } },
      ],
      ['removeDatabase', () => client.removeDatabase('orders'), '/v1/databases/orders', undefined],
      [
        'createJoinToken',
        () => client.createJoinToken({ kind: 'node', ttl: '30m' }),
        '/v1/tokens',
        { kind: 'node', ttl: '30m' },
      ],
      [
        'listRecordings',
        () => client.listRecordings({ user: 'bob', kind: 'ssh', limit: 5 }),
        '/v1/recordings?user=bob&kind=ssh&limit=5',
        undefined,
      ],
      ['getRecording', () => client.getRecording('s-1'), '/v1/recordings/s-1', undefined],
      [
        'deleteRecording',
        () => client.deleteRecording('s 1', { reason: 'GDPR request' }),
        '/v1/recordings/s%201/delete',
        { reason: 'GDPR request' },
      ],
      [
        'verifyAudit',
        () => client.verifyAudit({ since: '2026-01-01T00:00:00Z' }),
        '/v1/audit/verify?since=2026-01-01T00%3A00%3A00Z',
        undefined,
      ],
      [
        'readRecording',
        // The events route streams: collect the body and parse the echo like the JSON routes.
        async () => {
          const parts: Buffer[] = [];
          for await (const p of await client.readRecording('s/1', { format: 'asciicast', follow: true })) {
            parts.push(Buffer.from(p));
          }
          return JSON.parse(Buffer.concat(parts).toString('utf8'));
        },
        '/v1/recordings/s%2F1/events?format=asciicast&follow=1',
        undefined,
      ],
      ['listKubeClusters', () => client.listKubeClusters(), '/v1/kube/clusters', undefined],
      [
        'addKubeCluster',
        () =>
          client.addKubeCluster({ name: 'prod', kubeconfig: 'apiVersion: v1\n', labels: { env: 'prod' } }),
        '/v1/kube/clusters',
        { name: 'prod', kubeconfig: 'apiVersion: v1\n', labels: { env: 'prod' } },
      ],
      ['removeKubeCluster', () => client.removeKubeCluster('prod'), '/v1/kube/clusters/prod', undefined],
      ['listNodes', () => client.listNodes(), '/v1/nodes', undefined],
      [
        'addNode',
        () => client.addNode({ name: 'web1', addr: '10.0.0.5:22', labels: { env: 'dev' } }),
        '/v1/nodes',
        { name: 'web1', addr: '10.0.0.5:22', labels: { env: 'dev' } },
      ],
      ['removeNode', () => client.removeNode('web1'), '/v1/nodes/web1', undefined],
      [
        'signNodeHostCert',
        () => client.signNodeHostCert({ node: 'web1', public_key: 'ssh-ed25519 AAAA', ttl: '48h' }),
        '/v1/nodes/web1/host-cert',
        { public_key: 'ssh-ed25519 AAAA', ttl: '48h' },
      ],
      ['listDesktops', () => client.listDesktops(), '/v1/desktops', undefined],
      [
        'addDesktop',
        () =>
          client.addDesktop({
            name: 'win1',
            addr: '10.0.0.7:3389',
            labels: { env: 'prod' },
            tls_fingerprint: 'ab:cd',
            credentials: [{ login: 'Administrator', password: 'pw' }],
          }),
        '/v1/desktops',
        {
          name: 'win1',
          addr: '10.0.0.7:3389',
          labels: { env: 'prod' },
          tls_fingerprint: 'ab:cd',
          credentials: [{ login: 'Administrator', password: 'pw' }],
        },
      ],
      ['removeDesktop', () => client.removeDesktop('win 1'), '/v1/desktops/win%201', undefined],
      ['listSsoConnectors', () => client.listSsoConnectors(), '/v1/sso/connectors/all', undefined],
      [
        'putSsoConnector',
        () => client.putSsoConnector({ text: 'kind: oidc\n', client_secret: 's' }),
        '/v1/sso/connectors',
        { text: 'kind: oidc\n', client_secret: 's' },
      ],
      ['removeSsoConnector', () => client.removeSsoConnector('corp'), '/v1/sso/connectors/corp', undefined],
      [
        'testSsoConnector',
        () =>
          client.testSsoConnector('corp', {
            redirect_url: 'http://127.0.0.1:1/callback',
            client_challenge: 'c',
          }),
        '/v1/sso/connectors/corp/test',
        { redirect_url: 'http://127.0.0.1:1/callback', client_challenge: 'c' },
      ],
      ['caStatus', () => client.caStatus(), '/v1/ca/status', undefined],
      [
        'rotateCa',
        () => client.rotateCa({ type: 'host', phase: 'update_clients' }),
        '/v1/ca/rotate',
        { type: 'host', phase: 'update_clients' },
      ],
      ['listSessions', () => client.listSessions(), '/v1/sessions', undefined],
      ['killSession', () => client.killSession('s-1'), '/v1/sessions/s-1', undefined],
      ['listAccessRequests', () => client.listAccessRequests(), '/v1/requests', undefined],
      ['getAccessRequest', () => client.getAccessRequest('ab12cd34'), '/v1/requests/ab12cd34', undefined],
      [
        'createAccessRequest',
        () => client.createAccessRequest({ roles: ['prod-db'], reason: 'INC-1', ttl: '2h' }),
        '/v1/requests',
        { roles: ['prod-db'], reason: 'INC-1', ttl: '2h' },
      ],
      [
        'reviewAccessRequest',
        () => client.reviewAccessRequest('ab12cd34', { verdict: 'deny', reason: 'no' }),
        '/v1/requests/ab12cd34/reviews',
        { verdict: 'deny', reason: 'no' },
      ],
      [
        'dropAccessRequest',
        () => client.dropAccessRequest('ab12cd34', { reason: 'done' }),
        '/v1/requests/ab12cd34/drop',
        { reason: 'done' },
      ],
      [
        'searchAudit',
        () =>
          client.searchAudit({
            types: ['user.login', 'session.start'],
            user: 'bob',
            limit: 5,
            from: '2026-01-01T00:00:00Z',
          }),
        '/v1/audit/events?from=2026-01-01T00%3A00%3A00Z&types=user.login%2Csession.start&user=bob&limit=5',
        undefined,
      ],
    ];
    expect(calls.map((c) => c[0]).sort()).toEqual(Object.keys(ADMIN_ROUTES).sort());
    for (const [name, call, url, body] of calls) {
      seen = [];
      const out = await call();
      expect(seen, name).toHaveLength(1);
      const s = seen[0]!;
      expect(s.method, name).toBe(ADMIN_ROUTES[name][0]);
      expect(s.url, name).toBe(url);
      expect(s.clientCn, name).toBe('alice');
      if (body === undefined) {
        expect(s.body, name).toBe('');
      } else {
        expect(s.contentType, name).toBe('application/json');
        expect(JSON.parse(s.body), name).toEqual(body);
      }
      if (s.method === 'DELETE') expect(out).toBeUndefined();
      else expect(out).toEqual({ echo: url });
    }
  });

  it('calls the public routes', async () => {
    await client.ping();
    await client.login({ user: 'alice', password: 'pw' });
    await client.inspectInvite('tok/1');
    await client.acceptInvite('tok/1', { password: 'pw', otp: '123456' });
    await client.whoami();
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      'GET /v1/ping',
      'POST /v1/login',
      'GET /v1/invites/tok%2F1',
      'POST /v1/invites/tok%2F1',
      'GET /v1/whoami',
    ]);
    expect(JSON.parse(seen[3]!.body)).toEqual({ password: 'pw', otp: '123456' });
  });

  it('returns ca export as text with format and type in the query', async () => {
    reply = (_req, res) =>
      res.writeHead(200, { 'content-type': 'text/plain' }).end('@cert-authority * ssh-ed25519 AAAA\n');
    const text = await client.caExport('known_hosts', 'host');
    expect(text).toBe('@cert-authority * ssh-ed25519 AAAA\n');
    expect(seen[0]!.url).toBe('/v1/ca/export?format=known_hosts&type=host');
  });

  it('rebuilds a GatehouseError from problem JSON', async () => {
    reply = (_req, res) =>
      res.writeHead(403, { 'content-type': 'application/problem+json' }).end(
        JSON.stringify({
          type: 'https://gatehouse.dev/docs/errors#GH_ERR_ACCESS_DENIED',
          title: 'alice may not list users',
          status: 403,
          code: 'GH_ERR_ACCESS_DENIED',
          hint: 'ask an admin for a role with users:list',
          verb: 'list',
        }),
      );
    const err = await client.listUsers().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatehouseError);
    const g = err as GatehouseError;
    expect(g.code).toBe('GH_ERR_ACCESS_DENIED');
    expect(g.status).toBe(403);
    expect(g.message).toBe('alice may not list users');
    expect(g.hint).toBe('ask an admin for a role with users:list');
    expect(g.details).toEqual({ verb: 'list' });
  });

  it('round-trips a server-side GatehouseError through toProblem', async () => {
    const original = new GatehouseError('GH_ERR_ROLE_INVALID', 'role has errors', {
      hint: 'run gatehouse roles lint',
      details: { messages: [{ line: 3, column: 2, key: 'allow.nodes', message: 'unknown key' }] },
    });
    reply = (_req, res) =>
      res
        .writeHead(original.status, { 'content-type': 'application/problem+json' })
        .end(JSON.stringify(original.toProblem()));
    const g = (await client.putRole('x').catch((e: unknown) => e)) as GatehouseError;
    expect(g.code).toBe(original.code);
    expect(g.message).toBe(original.message);
    expect(g.hint).toBe(original.hint);
    expect(g.details).toEqual(original.details);
  });

  it('turns a non-JSON error into GH_ERR_UPSTREAM_UNAVAILABLE with a hint', async () => {
    reply = (_req, res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>Bad Gateway</h1>');
    const g = (await client.listRoles().catch((e: unknown) => e)) as GatehouseError;
    expect(g.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE');
    expect(g.message).toContain('HTTP 502');
    expect(g.hint).toContain('--proxy');
  });

  it('reports a refused connection as GH_ERR_UPSTREAM_UNAVAILABLE naming gatehouse start', async () => {
    const tmp = http.createServer();
    await new Promise<void>((r) => tmp.listen(0, '127.0.0.1', r));
    const port = (tmp.address() as AddressInfo).port;
    await new Promise((r) => tmp.close(r));
    const c = new GatehouseClient({ proxy: `127.0.0.1:${port}`, caPem: [pki.ca] });
    const g = (await c.ping().catch((e: unknown) => e)) as GatehouseError;
    c.close();
    expect(g.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE');
    expect(g.hint).toContain('gatehouse start');
  });

  it('refuses a proxy whose certificate the stored CA did not sign', async () => {
    const c = new GatehouseClient({ proxy, caPem: [pki.other] });
    const g = (await c.ping().catch((e: unknown) => e)) as GatehouseError;
    c.close();
    expect(g.code).toBe('GH_ERR_CERT_INVALID');
    expect(seen).toHaveLength(0);
  });

  it('tells a client whose certificate the proxy drops to log in again', async () => {
    // What the listener does with a refused client certificate: close right after the handshake.
    const dropper = tls.createServer(
      { key: pki.srvKey, cert: pki.srvCert, requestCert: true, rejectUnauthorized: false },
      (s) => s.destroy(),
    );
    await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', r));
    const port = (dropper.address() as AddressInfo).port;
    try {
      const c = new GatehouseClient({
        proxy: `127.0.0.1:${port}`,
        caPem: [pki.ca],
        certPem: pki.cliCert,
        keyPem: pki.cliKey,
      });
      const g = (await c.listUsers().catch((e: unknown) => e)) as GatehouseError;
      c.close();
      expect(g.code).toBe('GH_ERR_UPSTREAM_UNAVAILABLE');
      expect(g.message).toContain('closed the connection');
      expect(g.hint).toContain('gatehouse login');
    } finally {
      await new Promise((r) => dropper.close(r));
    }
  });

  it('sends no client certificate when none is configured', async () => {
    const c = new GatehouseClient({ proxy, caPem: [pki.ca] });
    await c.ping();
    c.close();
    expect(seen[0]!.clientCn).toBeUndefined();
  });
});

describe('client helpers', () => {
  it('parses host:port forms', () => {
    expect(parseHostPort('example.com:3080')).toEqual({ host: 'example.com', port: 3080 });
    expect(parseHostPort('[::1]:3080')).toEqual({ host: '::1', port: 3080 });
    expect(() => parseHostPort('example.com')).toThrow(/invalid address/);
    expect(() => parseHostPort('example.com:0')).toThrow(/invalid address/);
    expect(() => parseHostPort('example.com:70000')).toThrow(/invalid address/);
  });

  it('fills and encodes path params, refusing empty ones', () => {
    expect(fillPath('/v1/users/:name/lock', { name: 'a b' })).toBe('/v1/users/a%20b/lock');
    expect(() => fillPath('/v1/users/:name', {})).toThrow(/missing name/);
    expect(() => fillPath('/v1/users/:name', { name: '' })).toThrow(/missing name/);
  });

  it('builds the audit query string with types comma-separated', () => {
    expect(auditQueryString({ types: ['a', 'b'], q: 'rm -rf', cursor: 'c1' })).toBe(
      'types=a%2Cb&q=rm+-rf&cursor=c1',
    );
    expect(auditQueryString({})).toBe('');
  });
});
