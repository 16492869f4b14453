import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Adapter,
  encodeProxyV2,
  GatehouseClient,
  isGatehouseError,
  ManualClock,
  type TlsConnectionInfo,
} from '../src/index.js';
import {
  foreignCert,
  newTlsKey,
  rawExchange,
  startGateway,
  type TestGateway,
  tlsConnect,
  waitFor,
} from './helpers.js';

const PASSWORD = 'correct horse battery staple';

/** Refusals of `reason` the audit log accounts for: one per listener.reject, `count` per summary. */
async function rejects(t: TestGateway, reason: string): Promise<number> {
  const page = await t.gw.audit.search({
    types: ['listener.reject', 'listener.reject.summary'],
    limit: 1000,
  });
  let n = 0;
  for (const e of page.events) {
    if (e.type === 'listener.reject' && e.reason === reason) n++;
    if (e.type === 'listener.reject.summary' && e.reason === reason) n += e.count;
  }
  return n;
}

function client(t: TestGateway, cert?: { certPem: string; keyPem: string }) {
  return new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem, ...(cert ?? {}) });
}

async function loginAs(t: TestGateway, user: string) {
  const key = newTlsKey();
  const res = await client(t).login({ user, password: PASSWORD, tls_public_key: key.publicPem });
  return { res, cert: { certPem: res.tls_cert!, keyPem: key.privatePem } };
}

/** An adapter that answers "hello <user>" on ALPN gatehouse-echo after asking core for a grant. */
function echoAdapter(seen: TlsConnectionInfo[]): Adapter {
  return {
    name: 'echo',
    register(ctx) {
      ctx.routes.alpn('gatehouse-echo', (socket, info) => {
        seen.push(info);
        ctx.authorizer
          .authorize(
            info.identity,
            { kind: 'node', name: 'web1', labels: { env: 'dev' }, login: 'root' },
            { remoteAddr: info.remoteAddr },
          )
          .then((g) => socket.end(`granted ${g.identity.user} until ${g.expires.toISOString()}\n`))
          .catch((err: Error) => socket.end(`denied: ${err.message}\n`));
      });
    },
  };
}

function readAll(s: import('node:tls').TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    s.on('data', (d) => {
      out += d;
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

describe('gateway: listener, TLS and HTTP API', () => {
  let t: TestGateway;
  const seen: TlsConnectionInfo[] = [];

  beforeAll(async () => {
    t = await startGateway({
      values: {
        listener: {
          first_byte_timeout: '400ms',
          handshake_timeout: '400ms',
          max_body_bytes: 4096,
          // Refusals after the first of a kind arrive in summaries: one a second here.
          reject_audit: { window: '1s' },
        },
        auth: { second_factor: 'off', login_rate_per_minute: 1000 },
      },
    });
    t.gw.use(echoAdapter(seen));
    await t.gw.ready();
    await t.gw.admin.createUser({
      name: 'alice',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
    await t.gw.admin.createUser({
      name: 'root-admin',
      roles: ['admin', 'access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
  });
  afterAll(() => t.close());

  it('serves ping over TLS without a client certificate, with a server cert the host CA verifies', async () => {
    const ping = await client(t).ping();
    expect(ping.cluster_name).toBe('gatehouse');
    expect(ping.second_factor).toBe('off');
    const s = await tlsConnect(t.port, { ca: t.caPem, ALPNProtocols: ['http/1.1'] });
    expect(s.authorized).toBe(true);
    expect(s.alpnProtocol).toBe('http/1.1');
    s.destroy();
  });

  it('logs in with a password and returns SSH + X.509 certificates and a strict session cookie', async () => {
    const key = newTlsKey();
    const headers = await new Promise<import('node:http').IncomingHttpHeaders>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: t.port,
          path: '/v1/login',
          method: 'POST',
          ca: t.caPem,
          servername: 'localhost',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.headers));
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ user: 'alice', password: PASSWORD, tls_public_key: key.publicPem }));
    });
    const cookie = String(headers['set-cookie']);
    expect(cookie).toMatch(/^gh_session=[\w-]{40,};/);
    for (const attr of ['HttpOnly', 'Secure', 'SameSite=Strict', 'Path=/']) expect(cookie).toContain(attr);

    const { res, cert } = await loginAs(t, 'alice');
    expect(res.logins).toEqual(['root']);
    expect(res.tls_cert).toContain('BEGIN CERTIFICATE');
    const who = await client(t, cert).whoami();
    expect(who).toMatchObject({ user: 'alice', roles: ['access'], auth: 'client-cert' });
  });

  it('resumes TLS sessions (regression: "session id context uninitialized" broke every resumed connection)', async () => {
    const { Agent } = await import('node:https');
    const agent = new Agent({ keepAlive: false, maxCachedSessions: 10 });
    const get = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = request(
          { agent, host: '127.0.0.1', port: t.port, path: '/v1/ping', ca: t.caPem, servername: 'localhost' },
          (res) => {
            const reused = (res.socket as import('node:tls').TLSSocket).isSessionReused();
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, reused }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await get()).toEqual({ status: 200, reused: false });
    await new Promise((r) => setTimeout(r, 50));
    expect(await get()).toEqual({ status: 200, reused: true });
    agent.destroy();
  });

  it('refuses a wrong password with a problem code and audits the failure', async () => {
    const err = await client(t)
      .login({ user: 'alice', password: 'wrong password!!' })
      .catch((e: unknown) => e);
    expect(isGatehouseError(err, 'GH_ERR_BAD_CREDENTIALS')).toBe(true);
    const page = await t.gw.audit.search({ types: ['user.login'], user: 'alice' });
    expect(
      page.events.some((e) => e.type === 'user.login' && !e.success && e.reason === 'bad_password'),
    ).toBe(true);
  });

  it('refuses a client certificate from another CA at the handshake, before any HTTP', async () => {
    const f = foreignCert(t.dir);
    const before = await rejects(t, 'client_cert_untrusted');
    const s = await tlsConnect(t.port, {
      ca: t.caPem,
      cert: readFileSync(f.cert),
      key: readFileSync(f.key),
    }).catch((e: Error) => e);
    if (!(s instanceof Error)) {
      s.write('GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n');
      const body = await readAll(s).catch((e: Error) => `error: ${e.message}`);
      expect(body).not.toContain('HTTP/1.1');
    }
    await waitFor(
      async () => (await rejects(t, 'client_cert_untrusted')) > before,
      'client_cert_untrusted audit',
    );
  });

  it('admin routes need a role rule: access is refused, admin is allowed', async () => {
    const { cert } = await loginAs(t, 'alice');
    const err = await client(t, cert)
      .listUsers()
      .catch((e: unknown) => e);
    expect(isGatehouseError(err, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    const denied = await t.gw.audit.search({ types: ['access.denied'], user: 'alice' });
    expect(denied.events.length).toBeGreaterThan(0);
    const admin = await loginAs(t, 'root-admin');
    const users = await client(t, admin.cert).listUsers();
    expect(users.map((u) => u.name).sort()).toEqual(['alice', 'root-admin']);
  });

  it('closes garbage and plain HTTP with an audit event, and keeps serving', async () => {
    const before = await rejects(t, 'unknown_protocol');
    const g = await rawExchange(t.port, Buffer.from('\xff\xfe garbage \x00\x01', 'latin1'));
    expect(g.data.length).toBe(0);
    const h = await rawExchange(t.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(h.data.toString()).toMatch(/^HTTP\/1.1 400/);
    expect(h.data.toString()).toContain('https://');
    await waitFor(
      async () => (await rejects(t, 'unknown_protocol')) >= before + 2,
      'unknown_protocol audits',
    );
    expect((await client(t).ping()).cluster_name).toBe('gatehouse');
  });

  it('drops a silent client after the first-byte deadline and a stalled TLS handshake after its deadline', async () => {
    const silent = await rawExchange(t.port, '', { wait: 3_000 });
    expect(silent.closedByServer).toBe(true);
    await waitFor(async () => (await rejects(t, 'first_byte_timeout')) > 0, 'first_byte_timeout audit');
    const stalled = await rawExchange(t.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50, 0x01]), {
      wait: 3_000,
    });
    expect(stalled.closedByServer).toBe(true);
    await waitFor(async () => (await rejects(t, 'handshake_timeout')) > 0, 'handshake_timeout audit');
  });

  it('refuses an oversized request body with 413 and an audit event', async () => {
    const big = JSON.stringify({ user: 'alice', password: 'x'.repeat(10_000) });
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: t.port,
          path: '/v1/login',
          method: 'POST',
          ca: t.caPem,
          servername: 'localhost',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(big);
    });
    expect(status).toBe(413);
    const page = await t.gw.audit.search({ types: ['http.reject'] });
    expect(page.events.some((e) => e.type === 'http.reject' && e.status === 413)).toBe(true);
  });

  it('refuses a PROXY header from an address that is not trusted', async () => {
    const hdr = encodeProxyV2({ address: '203.0.113.9', port: 5555 }, { address: '127.0.0.1', port: t.port });
    const r = await rawExchange(t.port, Buffer.concat([hdr, Buffer.from('SSH-2.0-x\r\n')]));
    expect(r.data.length).toBe(0);
    await waitFor(
      async () => (await rejects(t, 'proxy_protocol_untrusted')) > 0,
      'proxy_protocol_untrusted audit',
    );
  });

  it('routes by ALPN to the adapter with the verified identity, and core decides access', async () => {
    const { cert } = await loginAs(t, 'alice');
    const s = await tlsConnect(t.port, {
      ca: t.caPem,
      cert: cert.certPem,
      key: cert.keyPem,
      ALPNProtocols: ['gatehouse-echo'],
    });
    expect(s.alpnProtocol).toBe('gatehouse-echo');
    expect(await readAll(s)).toMatch(/^granted alice until /);
    expect(seen.at(-1)?.identity?.user).toBe('alice');

    // Without a certificate the adapter still gets the connection, and core says no.
    const anon = await tlsConnect(t.port, { ca: t.caPem, ALPNProtocols: ['gatehouse-echo'] });
    expect(await readAll(anon)).toMatch(/^denied: access denied: no Gatehouse client certificate/);
  });

  it('a lock and then deleting the user revoke a certificate that is still valid', async () => {
    await t.gw.admin.createUser({
      name: 'bob',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
    const { cert } = await loginAs(t, 'bob');
    expect((await client(t, cert).whoami()).user).toBe('bob');
    const lock = await t.gw.admin.lockUser('bob', { message: 'incident 42' });
    const locked = await client(t, cert)
      .whoami()
      .catch((e: unknown) => e);
    expect(isGatehouseError(locked, 'GH_ERR_USER_LOCKED')).toBe(true);
    expect((locked as Error).message).toContain('incident 42');
    await t.gw.admin.deleteLock(lock.id);
    expect((await client(t, cert).whoami()).user).toBe('bob');
    await t.gw.admin.deleteUser('bob');
    const gone = await client(t, cert)
      .whoami()
      .catch((e: unknown) => e);
    expect(isGatehouseError(gone, 'GH_ERR_ACCESS_DENIED')).toBe(true);
  });

  it('a user created again under a deleted name does not inherit the old certificates (X.509 or web session)', async () => {
    await t.gw.admin.createUser({
      name: 'carl',
      roles: ['access'],
      traits: { logins: ['root'] },
      password: PASSWORD,
    });
    const { cert } = await loginAs(t, 'carl');
    expect((await client(t, cert).whoami()).user).toBe('carl');
    await t.gw.admin.deleteUser('carl');
    await t.gw.admin.createUser({ name: 'carl', roles: ['access', 'admin'], traits: {}, password: PASSWORD });
    const old = await client(t, cert)
      .whoami()
      .catch((e: unknown) => e);
    expect(isGatehouseError(old, 'GH_ERR_ACCESS_DENIED')).toBe(true);
    expect((old as Error).message).toContain('earlier user named "carl"');
    // The new carl's own login works.
    const fresh = await loginAs(t, 'carl');
    expect((await client(t, fresh.cert).whoami()).roles).toEqual(['access', 'admin']);
  });

  it('cookie sessions need the CSRF token for state changes', async () => {
    const key = newTlsKey();
    const login = await new Promise<{ cookie: string; csrf: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: t.port,
          path: '/v1/login',
          method: 'POST',
          ca: t.caPem,
          servername: 'localhost',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () =>
            resolve({
              cookie: String(res.headers['set-cookie']).split(';')[0]!,
              csrf: JSON.parse(body).csrf_token,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ user: 'alice', password: PASSWORD, tls_public_key: key.publicPem }));
    });
    const call = (method: string, path: string, headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', port: t.port, path, method, ca: t.caPem, servername: 'localhost', headers },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    expect(await call('GET', '/v1/whoami', { cookie: login.cookie })).toBe(200);
    // Regression: a web session has no certificate traits, yet its logins come from the user record.
    const who = await new Promise<{ logins: string[]; auth: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: t.port,
          path: '/v1/whoami',
          ca: t.caPem,
          servername: 'localhost',
          headers: { cookie: login.cookie },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve(JSON.parse(body)));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(who).toMatchObject({ logins: ['root'], auth: 'session' });
    expect(await call('POST', '/v1/logout', { cookie: login.cookie })).toBe(403);
    expect(await call('POST', '/v1/logout', { cookie: login.cookie, 'x-csrf-token': login.csrf })).toBe(204);
    expect(await call('GET', '/v1/whoami', { cookie: login.cookie })).toBe(401);
  });
});

describe('gateway: limits and PROXY protocol from trusted addresses', () => {
  it('caps concurrent handshakes and audits the refusal', async () => {
    const t = await startGateway({
      values: { listener: { max_concurrent_handshakes: 2, first_byte_timeout: '5s' } },
    });
    try {
      const net = await import('node:net');
      const idle = [0, 1].map(() => net.connect({ port: t.port, host: '127.0.0.1' }));
      await Promise.all(idle.map((s) => new Promise((r) => s.once('connect', r))));
      // Let the server accept both before the third arrives.
      await new Promise((r) => setTimeout(r, 200));
      const third = await rawExchange(t.port, '', { wait: 2_000 });
      expect(third.closedByServer).toBe(true);
      await waitFor(async () => (await rejects(t, 'too_many_handshakes')) > 0, 'too_many_handshakes audit');
      for (const s of idle) s.destroy();
    } finally {
      await t.close();
    }
  });

  it('takes the client address from a trusted PROXY v2 header', async () => {
    const t = await startGateway({ values: { listener: { proxy_protocol_trusted: ['127.0.0.0/8'] } } });
    const seen: TlsConnectionInfo[] = [];
    t.gw.use(echoAdapter(seen));
    await t.gw.ready();
    try {
      const hdr = encodeProxyV2(
        { address: '198.51.100.7', port: 40000 },
        { address: '127.0.0.1', port: t.port },
      );
      const net = await import('node:net');
      const tls = await import('node:tls');
      const raw = net.connect({ port: t.port, host: '127.0.0.1' });
      await new Promise((r) => raw.once('connect', r));
      raw.write(hdr);
      const s = tls.connect({
        socket: raw,
        ca: t.caPem,
        servername: 'localhost',
        ALPNProtocols: ['gatehouse-echo'],
      });
      await readAll(s);
      expect(seen[0]).toMatchObject({ remoteAddr: '198.51.100.7', remotePort: 40000, proxied: true });
    } finally {
      await t.close();
    }
  });
});

describe('gateway: embedding', () => {
  it('two gateways in one process keep separate CAs, users and routes', async () => {
    const a = await startGateway({ clusterName: 'alpha' });
    const b = await startGateway({ clusterName: 'beta' });
    try {
      expect(a.gw.caPin()).not.toBe(b.gw.caPin());
      a.gw.use(echoAdapter([]));
      await a.gw.ready();
      expect(() => a.gw.use(echoAdapter([]))).toThrow(/already in use/);
      b.gw.use(echoAdapter([])); // the same adapter name on another gateway is fine
      await a.gw.admin.createUser({ name: 'carol', roles: ['access'], password: PASSWORD });
      expect((await b.gw.admin.listUsers()).map((u) => u.name)).not.toContain('carol');
      expect((await client(a).ping()).cluster_name).toBe('alpha');
      expect((await client(b).ping()).cluster_name).toBe('beta');
      // A's certificate means nothing to B.
      const { cert } = await loginAs(a, 'carol');
      const err = await tlsConnect(b.port, {
        ca: b.caPem,
        cert: cert.certPem,
        key: cert.keyPem,
        ALPNProtocols: ['http/1.1'],
      })
        .then((s) => readAll(s))
        .catch((e: Error) => e);
      expect(typeof err === 'string' ? err : '').not.toContain('HTTP/1.1 200');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('an expired identity is refused by core even if a TLS stack let it through', async () => {
    const clock = new ManualClock(Date.now());
    const t = await startGateway({ clock });
    try {
      await t.gw.admin.createUser({
        name: 'dave',
        roles: ['access'],
        traits: { logins: ['dave'] },
        password: PASSWORD,
      });
      const { res } = await loginAs(t, 'dave');
      const { X509Certificate } = await import('node:crypto');
      const cert = new X509Certificate(res.tls_cert!);
      const id = t.gw.authorizer.identityFromCert(cert);
      expect(id.user).toBe('dave');
      clock.advance(9 * 3600 * 1000);
      expect(() => t.gw.authorizer.identityFromCert(cert)).toThrow(/expired/);
      await expect(t.gw.authorizer.principal(id)).rejects.toThrow(/expired/);
    } finally {
      await t.close();
    }
  });
});
