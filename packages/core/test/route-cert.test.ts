import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseClient } from '../src/api/client.js';
import { decodeIdentity } from '../src/pki/x509.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

const PASSWORD = 'correct horse battery staple';

describe('POST /v1/certs/route (gatehouse db login without a password)', () => {
  let t: TestGateway;
  let key: { privatePem: string; publicPem: string };
  let loginCert: string;
  let client: GatehouseClient;
  const proxy = () => `127.0.0.1:${t.port}`;

  beforeAll(async () => {
    t = await startGateway();
    await t.gw.admin.putRole(
      'kind: role\nname: pg-dev\nallow:\n  db_labels: { engine: postgres }\n  db_users: [alice]\n  db_names: ["*"]\n',
      { create: true },
    );
    await t.gw.admin.createUser({ name: 'alice', roles: ['pg-dev'], traits: {}, password: PASSWORD });
    await t.gw.admin.addDatabase({
      name: 'orders',
      protocol: 'postgres',
      uri: 'db.internal:5432',
      labels: { engine: 'postgres' },
    });
    await t.gw.admin.addDatabase({
      name: 'billing',
      protocol: 'mysql',
      uri: 'db.internal:3306',
      labels: { engine: 'mysql' },
    });
    key = newTlsKey();
    const anon = new GatehouseClient({ proxy: proxy(), caPem: t.caPem });
    const res = await anon.login({
      user: 'alice',
      password: PASSWORD,
      tls_public_key: key.publicPem,
      ttl: '2h',
    });
    anon.close();
    loginCert = res.tls_cert!;
    client = new GatehouseClient({
      proxy: proxy(),
      caPem: t.caPem,
      certPem: loginCert,
      keyPem: key.privatePem,
    });
  });

  afterAll(async () => {
    client?.close();
    await t?.close();
  });

  it('re-issues the caller certificate for the same key, scoped to the database, expiring no later', async () => {
    const res = await client.routeCert({
      route: { kind: 'db', name: 'orders', user: 'alice', database: 'app' },
    });
    const cert = new X509Certificate(res.tls_cert);
    const login = new X509Certificate(loginCert);
    expect(cert.publicKey.export({ type: 'spki', format: 'der' })).toEqual(
      login.publicKey.export({ type: 'spki', format: 'der' }),
    );
    expect(new Date(cert.validTo).getTime()).toBeLessThanOrEqual(new Date(login.validTo).getTime());
    const id = decodeIdentity(cert);
    expect(id.user).toBe('alice');
    expect(id.route).toEqual({
      kind: 'db',
      name: 'orders',
      protocol: 'postgres',
      user: 'alice',
      database: 'app',
    });
    expect(res.cas.host_x509).toEqual(t.caPem);
    // The listener accepts it as alice's identity.
    expect(t.gw.authorizer.identityFromCert(cert).route?.kind).toBe('db');
  });

  describe('a db route names the resource, not the database name', () => {
    let bob: GatehouseClient | undefined;
    const target = (dbName: string, name = 'orders') => ({
      kind: 'db' as const,
      name,
      labels: { engine: 'postgres' },
      protocol: 'postgres',
      dbUser: 'bob',
      dbName,
    });

    beforeAll(async () => {
      await t.gw.admin.putRole(
        'kind: role\nname: pg-two\nallow:\n  db_labels: { engine: postgres }\n  db_users: [bob]\n  db_names: [app, app_copy]\n',
        { create: true },
      );
      await t.gw.admin.createUser({ name: 'bob', roles: ['pg-two'], traits: {}, password: PASSWORD });
      const anon = new GatehouseClient({ proxy: proxy(), caPem: t.caPem });
      const res = await anon.login({
        user: 'bob',
        password: PASSWORD,
        tls_public_key: key.publicPem,
        ttl: '1h',
      });
      anon.close();
      bob = new GatehouseClient({
        proxy: proxy(),
        caPem: t.caPem,
        certPem: res.tls_cert!,
        keyPem: key.privatePem,
      });
    });
    afterAll(() => bob?.close());

    const routeIdentity = async () => {
      const res = await bob!.routeCert({
        route: { kind: 'db', name: 'orders', user: 'bob', database: 'app' },
      });
      return t.gw.authorizer.identityFromCert(new X509Certificate(res.tls_cert));
    };

    it('a certificate from one db login works for every database name the role allows (was: scoped to db "orders")', async () => {
      const id = await routeIdentity();
      for (const name of ['app', 'app_copy']) {
        const grant = await t.gw.authorizer.authorize(id, target(name));
        expect(grant.target).toMatchObject({ name: 'orders', dbName: name });
      }
    });

    it('refuses a name the role does not allow, naming the allowed names and what to ask for', async () => {
      const id = await routeIdentity();
      const err = await t.gw.authorizer.authorize(id, target('payroll')).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'GH_ERR_ACCESS_DENIED',
        message: expect.stringContaining('(allowed names: app, app_copy)'),
        hint: expect.stringContaining('db_names: ["payroll"] on database "orders"'),
        details: expect.objectContaining({ field: 'db_names' }),
      });
    });

    it('refuses another database resource, saying which db login to run', async () => {
      const id = await routeIdentity();
      const err = await t.gw.authorizer.authorize(id, target('app', 'invoices')).catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: 'GH_ERR_ACCESS_DENIED',
        message: 'access denied: certificate is for database "orders", not database "invoices"',
        hint: 'run gatehouse db login invoices',
        details: expect.objectContaining({ field: 'route' }),
      });
    });
  });

  it('refuses a database the roles cannot see, and audits it', async () => {
    await expect(client.routeCert({ route: { kind: 'db', name: 'billing' } })).rejects.toMatchObject({
      code: 'GH_ERR_ACCESS_DENIED',
    });
    const denied = await t.gw.audit.search({ types: ['access.denied'], user: 'alice' });
    expect(denied.events.some((e) => (e as { resource: string }).resource === 'billing')).toBe(true);
  });

  it('says when the database is not registered', async () => {
    await expect(client.routeCert({ route: { kind: 'db', name: 'nope' } })).rejects.toMatchObject({
      code: 'GH_ERR_NOT_FOUND',
    });
  });

  it('does not let a route-scoped certificate ask for another route', async () => {
    const res = await client.routeCert({ route: { kind: 'db', name: 'orders' } });
    const scoped = new GatehouseClient({
      proxy: proxy(),
      caPem: t.caPem,
      certPem: res.tls_cert,
      keyPem: key.privatePem,
    });
    try {
      await expect(scoped.routeCert({ route: { kind: 'db', name: 'orders' } })).rejects.toMatchObject({
        code: 'GH_ERR_ACCESS_DENIED',
      });
    } finally {
      scoped.close();
    }
  });

  it('needs a client certificate', async () => {
    const anon = new GatehouseClient({ proxy: proxy(), caPem: t.caPem });
    try {
      await expect(anon.routeCert({ route: { kind: 'db', name: 'orders' } })).rejects.toMatchObject({
        code: 'GH_ERR_UNAUTHENTICATED',
      });
    } finally {
      anon.close();
    }
  });
});
