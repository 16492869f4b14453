import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseClient, type Identity, type Revocation } from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway, waitFor } from './helpers.js';

/**
 * Access requests in one gateway: a certificate issued for an approved
 * request (POST /v1/certs/request) carries its roles; a denial or drop
 * ends the live sessions that use it the way a lock does, through the
 * backend watch (the same path another gateway's change takes).
 */
const PASSWORD = 'correct horse battery staple';

describe('access requests: certificates and the session lifecycle', () => {
  let t: TestGateway;

  beforeAll(async () => {
    t = await startGateway();
    const gw = t.gw;
    await gw.admin.putRole('kind: role\nname: asker\nallow:\n  request: { roles: [prod] }\n');
    await gw.admin.putRole(
      'kind: role\nname: prod\nallow:\n  db_labels: { env: prod }\n  db_users: [app]\n  db_names: ["*"]\n',
    );
    await gw.admin.putRole('kind: role\nname: reviewer\nallow:\n  review_requests: { roles: [prod] }\n');
    await gw.admin.createUser({ name: 'alice', roles: ['asker'], password: PASSWORD });
    await gw.admin.createUser({ name: 'bob', roles: ['reviewer'], password: PASSWORD });
  });
  afterAll(async () => {
    await t?.close();
  });

  /** alice's login certificate, re-issued for `requestId` over HTTP; the identity it carries. */
  async function requestIdentity(requestId: string): Promise<{ identity: Identity; roles: string[] }> {
    const key = newTlsKey();
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const res = await anon.login({ user: 'alice', password: PASSWORD, tls_public_key: key.publicPem });
    anon.close();
    const client = new GatehouseClient({
      proxy: `127.0.0.1:${t.port}`,
      caPem: t.caPem,
      certPem: res.tls_cert!,
      keyPem: key.privatePem,
    });
    try {
      const fresh = newTlsKey();
      const out = await client.requestCerts({ request_ids: [requestId], tls_public_key: fresh.publicPem });
      return {
        identity: t.gw.authorizer.identityFromCert(new X509Certificate(out.tls_cert!)),
        roles: out.roles,
      };
    } finally {
      client.close();
    }
  }

  const target = {
    kind: 'db' as const,
    name: 'orders',
    labels: { env: 'prod' },
    protocol: 'postgres',
    dbUser: 'app',
    dbName: 'x',
  };

  /** A bound database session; `ended` resolves with why core ended it. */
  async function liveDbSession(identity: Identity): Promise<{ ended: Promise<Revocation> }> {
    const grant = await t.gw.authorizer.authorize(identity, target);
    const ended = new Promise<Revocation>((resolve) => {
      const s = t.gw.liveSessions.bind(
        grant,
        { kind: 'db', protocol: 'postgres', server: 'orders' },
        { terminate: resolve },
      );
      void s.ready;
    });
    return { ended };
  }

  it('a certificate for an approved request grants its roles; a denial afterwards ends its live session', async () => {
    const r = await t.gw.authorizedAdmin('alice').createAccessRequest({ roles: ['prod'], reason: 'INC-1' });
    const pending = await requestIdentity(r.id).catch((e: unknown) => e);
    expect(pending).toMatchObject({
      code: 'GH_ERR_ACCESS_DENIED',
      message: `access request ${r.id} was pending`,
    });
    await t.gw.authorizedAdmin('bob').reviewAccessRequest(r.id, { verdict: 'approve' });
    const { identity, roles } = await requestIdentity(r.id);
    expect(roles).toEqual(['asker', 'prod']);
    expect(identity.accessRequests).toEqual([r.id]);
    expect(identity.expires.getTime()).toBeLessThanOrEqual(Date.parse(r.expires));
    const { ended } = await liveDbSession(identity);
    await t.gw.admin.reviewAccessRequest(r.id, { verdict: 'deny', reason: 'no' });
    const why = await ended;
    expect(why).toMatchObject({ cause: 'access_revoked' });
    expect(why.message).toMatch(new RegExp(`access request ${r.id} was denied by local:`));
    // New sessions with that certificate are refused too.
    await expect(t.gw.authorizer.authorize(identity, target)).rejects.toMatchObject({
      code: 'GH_ERR_ACCESS_DENIED',
    });
  });

  it('a drop ends the live session too; without the request the same certificate has no prod access', async () => {
    const r = await t.gw.authorizedAdmin('alice').createAccessRequest({ roles: ['prod'], reason: 'INC-2' });
    await t.gw.authorizedAdmin('bob').reviewAccessRequest(r.id, { verdict: 'approve' });
    const { identity } = await requestIdentity(r.id);
    const { ended } = await liveDbSession(identity);
    await t.gw.authorizedAdmin('alice').dropAccessRequest(r.id, { reason: 'done' });
    expect((await ended).message).toMatch(new RegExp(`access request ${r.id} was dropped by alice`));
    // A certificate that names the prod role but no request gets nothing from it.
    const forged = { ...identity, accessRequests: undefined };
    await expect(t.gw.authorizer.authorize(forged, target)).rejects.toMatchObject({
      code: 'GH_ERR_ACCESS_DENIED',
    });
    await waitFor(() => t.gw.liveSessions.size === 0 || undefined, 'no live session left');
  });
});
