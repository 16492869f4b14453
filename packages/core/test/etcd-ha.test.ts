import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdBackend } from '../src/backend/etcd.js';
import { SECRETS_KEY_ENV } from '../src/crypto/seal.js';
import {
  createGateway,
  GatehouseClient,
  type GatehouseError,
  type Gateway,
  type Identity,
  isGatehouseError,
  type Revocation,
} from '../src/index.js';
import { type EtcdServer, startEtcd } from '../src/testing/etcd.js';
import { newTlsKey } from './helpers.js';

/**
 * Two gateways in one process, each with its own data dir, sharing state on
 * one real etcd through `backend: { type: etcd }` in their config, as two
 * machines behind a load balancer would.
 */
describe('two gateways on one etcd', () => {
  let etcd: EtcdServer;
  const dirs: string[] = [];
  const gateways: Gateway[] = [];
  let a: Gateway;
  let b: Gateway;
  let portB: number;
  const prefix = `ha-${randomBytes(4).toString('hex')}/`;
  // Every gateway of a cluster must share the key that seals the CAs.
  const env = { [SECRETS_KEY_ENV]: randomBytes(32).toString('base64') };

  async function gateway(): Promise<Gateway> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-ha-'));
    dirs.push(dir);
    const gw = await createGateway({
      dataDir: dir,
      secondFactor: 'off',
      env,
      webDir: false,
      values: { backend: { type: 'etcd', endpoints: [etcd.endpoint], prefix, request_timeout: '2s' } },
    });
    gateways.push(gw);
    return gw;
  }

  beforeAll(async () => {
    etcd = await startEtcd();
    // Both start at once on an empty etcd: they race to create the CAs.
    [a, b] = await Promise.all([gateway(), gateway()]);
    await a.listen({ host: '127.0.0.1', port: 0 });
    portB = (await b.listen({ host: '127.0.0.1', port: 0 })).port;
  });

  afterAll(async () => {
    for (const gw of gateways) await gw.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    await etcd?.cleanup();
  });

  it('two gateways starting at once on an empty etcd end with exactly one CA of each kind (and one audit key)', async () => {
    expect(a.backend.kind).toBe('etcd');
    const look = await EtcdBackend.open({ endpoints: [etcd.endpoint], prefix });
    try {
      const cas = await look.range('cas/');
      expect(cas.map((i) => i.key)).toEqual(['cas/audit', 'cas/db', 'cas/host', 'cas/user']);
      // The audit key too: both sign their audit files' heads with the one key.
      expect(Object.keys(a.authorities.auditPublicKeys())).toHaveLength(1);
      expect(b.authorities.auditPublicKeys()).toEqual(a.authorities.auditPublicKeys());
      for (const name of ['user', 'host', 'db'] as const) {
        const ids = (gw: Gateway) => gw.authorities.get(name).map((k) => k.id);
        expect(ids(a)).toHaveLength(1);
        expect(ids(b)).toEqual(ids(a));
        const stored = JSON.parse(cas.find((i) => i.key === `cas/${name}`)!.value) as {
          keys: { id: string }[];
        };
        expect(stored.keys.map((k) => k.id)).toEqual(ids(a));
      }
    } finally {
      await look.close();
    }
  });

  it('a user added on gateway A logs in on gateway B', async () => {
    const password = 'correct horse battery staple 42';
    await a.admin.createUser({ name: 'alice', roles: ['access'], traits: { logins: ['gh-test'] }, password });
    const key = newTlsKey();
    const res = await new GatehouseClient({
      proxy: `127.0.0.1:${portB}`,
      caPem: b.authorities.get('host').map((k) => k.x509CertPem),
    }).login({ user: 'alice', password, tls_public_key: key.publicPem });
    expect(res.tls_cert).toContain('BEGIN CERTIFICATE');
    // B signed it with the one shared user CA, so gateway A accepts it as well.
    const { X509Certificate } = await import('node:crypto');
    const cert = new X509Certificate(res.tls_cert!);
    expect(cert.verify(new X509Certificate(a.authorities.get('user')[0]!.x509CertPem).publicKey)).toBe(true);
  });

  it("a lock issued on gateway A ends a session on gateway B through B's etcd watch", async () => {
    await a.admin.createUser({ name: 'bob', roles: ['access'], traits: { logins: ['gh-test'] } });
    const identity: Identity = {
      user: 'bob',
      roles: ['access'],
      traits: { logins: ['gh-test'] },
      expires: new Date(Date.now() + 3600e3),
    };
    const grant = await b.authorizer.authorize(identity, {
      kind: 'node',
      name: 'web1',
      labels: {},
      login: 'gh-test',
    });
    const ended: Revocation[] = [];
    let endedAt = 0;
    const live = b.liveSessions.bind(
      grant,
      { kind: 'ssh', protocol: 'ssh', server: 'web1', login: 'gh-test' },
      {
        terminate: (r) => {
          endedAt = performance.now();
          ended.push(r);
        },
      },
    );
    expect(await live.ready).toBeUndefined();

    const lockedAt = performance.now();
    await a.admin.lockUser('bob', { message: 'stolen laptop' });
    // Nothing on B polls: only its watch on locks/ can end the session.
    while (ended.length === 0) await new Promise((r) => setTimeout(r, 10));
    console.log(`lock on A to session end on B: ${(endedAt - lockedAt).toFixed(1)} ms`);
    expect(ended).toEqual([{ cause: 'locked', message: 'access locked (user bob): stolen laptop' }]);
    expect(b.liveSessions.get(grant.sessionId)).toBeUndefined();
  });

  it('a gateway with another secrets key than the others is refused at start, naming GATEHOUSE_SECRETS_KEY', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-ha-'));
    dirs.push(dir);
    const err = await createGateway({
      dataDir: dir,
      env: { [SECRETS_KEY_ENV]: randomBytes(32).toString('base64') },
      webDir: false,
      values: { backend: { type: 'etcd', endpoints: [etcd.endpoint], prefix } },
    }).then(
      (gw) => {
        gateways.push(gw);
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(isGatehouseError(err, 'GH_ERR_CONFIG_INVALID')).toBe(true);
    expect((err as GatehouseError).message).toContain(
      `are sealed with another secrets key than this gateway's`,
    );
    expect((err as GatehouseError).hint).toContain('GATEHOUSE_SECRETS_KEY');
  });

  // Last: it stops the etcd the other tests share.
  it('while etcd is down a login fails closed with GH_ERR_BACKEND_UNAVAILABLE, and works again once etcd is back', async () => {
    const password = 'another correct horse 43';
    await a.admin.createUser({ name: 'carol', roles: ['access'], traits: { logins: ['gh-test'] }, password });
    const client = new GatehouseClient({
      proxy: `127.0.0.1:${portB}`,
      caPem: b.authorities.get('host').map((k) => k.x509CertPem),
    });
    const login = () => client.login({ user: 'carol', password, tls_public_key: newTlsKey().publicPem });
    await etcd.stop();
    try {
      const err = await login().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isGatehouseError(err, 'GH_ERR_BACKEND_UNAVAILABLE')).toBe(true);
      expect((err as Error).message).toContain('etcd');
    } finally {
      await etcd.start();
    }
    // No restart of the gateway: it reconnects by itself.
    for (;;) {
      const res = await login().catch((e: unknown) => {
        if (!isGatehouseError(e, 'GH_ERR_BACKEND_UNAVAILABLE')) throw e;
        return undefined;
      });
      if (res) {
        expect(res.tls_cert).toContain('BEGIN CERTIFICATE');
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
