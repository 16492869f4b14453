/**
 * Per-session MFA in core (role option require_session_mfa), through the real
 * HTTP API over TLS and core's Authorizer: the challenge, TOTP answers, the
 * one-minute certificates bound to one target, the refusal of the login
 * certificate alone, and the live-session rule after the minute.
 */
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { type TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AccessTarget,
  GatehouseClient,
  type Identity,
  isGatehouseError,
  ManualClock,
  parseSshCertificate,
  type SessionMfaChallengeRequest,
  SSH_SESSION_MFA_OPTION,
  sshCertificateIdentity,
  verifySshCertificate,
} from '../src/index.js';
import { decodeIdentity } from '../src/pki/x509.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

const PASSWORD = 'a long enough passphrase';

function sshKey(): string {
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = publicKey.export({ type: 'spki', format: 'der' }).subarray(-32);
  const name = Buffer.from('ssh-ed25519');
  const blob = Buffer.concat([
    Buffer.from([0, 0, 0, name.length]),
    name,
    Buffer.from([0, 0, 0, raw.length]),
    raw,
  ]);
  return `ssh-ed25519 ${blob.toString('base64')}`;
}

const node = (name: string, login: string): AccessTarget => ({
  kind: 'node',
  name,
  labels: { env: 'prod' },
  login,
});
const failure = (e: unknown) => (isGatehouseError(e) ? e.code : String(e));

describe('per-session MFA (require_session_mfa)', () => {
  let t: TestGateway;
  let clock: ManualClock;
  const totps = new Map<string, TOTP>();
  const clients = new Map<string, { client: GatehouseClient; identity: Identity }>();
  /** The next time step's code (each step is good once per device). */
  const code = (user: string) => {
    clock.advance(30_000);
    return totps.get(user)!.generate({ timestamp: clock.now().getTime() });
  };
  /** The newest mfa.session event (search answers newest first). */
  const lastMfa = async () => (await t.gw.audit.search({ types: ['mfa.session'], limit: 1 })).events[0];

  async function enroll(name: string, roles: string[]) {
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const { token } = await t.gw.admin.createUser({ name, roles, traits: { logins: ['ops'] } });
    const info = await anon.inspectInvite(token!.token);
    const totp = URI.parse(info.totp!.uri) as TOTP;
    totps.set(name, totp);
    await anon.acceptInvite(token!.token, { password: PASSWORD, otp: code(name) });
    clock.advance(30_000);
    const key = newTlsKey();
    const res = await anon.login({
      user: name,
      password: PASSWORD,
      otp: code(name),
      tls_public_key: key.publicPem,
    });
    clock.advance(30_000);
    anon.close();
    const client = new GatehouseClient({
      proxy: `127.0.0.1:${t.port}`,
      caPem: t.caPem,
      certPem: res.tls_cert!,
      keyPem: key.privatePem,
    });
    clients.set(name, { client, identity: decodeIdentity(res.tls_cert!) });
  }

  /** A whole check with the right code: the challenge, then the answer with `keys` (none: a web token). */
  async function check(
    client: GatehouseClient,
    target: SessionMfaChallengeRequest['target'],
    keys: { ssh_public_key?: string; tls_public_key?: string } = {},
  ) {
    const ch = await client.sessionMfaChallenge({ target });
    expect(ch.required).toBe(true);
    return client.sessionMfaCerts({
      challenge_id: ch.challenge_id!,
      response: { method: 'totp', code: code('alice') },
      ...keys,
    });
  }

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    t = await startGateway({ clock, secondFactor: 'otp' });
    const role = (name: string, mfa: boolean) =>
      `kind: role\nname: ${name}\nallow:\n  logins: [ops]\n  node_labels: { env: prod }\n  db_labels: { "*": "*" }\n  db_users: [alice, bob]\n  db_names: ["*"]\n  kube_labels: { "*": "*" }\n  kube_groups: [dev]\n${mfa ? 'options:\n  require_session_mfa: true\n' : ''}`;
    await t.gw.admin.putRole(role('prod-mfa', true), { create: true });
    await t.gw.admin.putRole(role('prod', false), { create: true });
    await t.gw.admin.addDatabase({
      name: 'orders',
      protocol: 'postgres',
      uri: 'db.internal:5432',
      labels: {},
    });
    await enroll('alice', ['prod-mfa', 'prod']);
    await enroll('bob', ['prod']);
  });

  afterAll(async () => {
    for (const c of clients.values()) c.client.close();
    await t?.close();
  });

  it('a role without the option is unaffected: no check required, the login certificate opens sessions', async () => {
    const bob = clients.get('bob')!;
    const r = await bob.client.sessionMfaChallenge({ target: { kind: 'node', node: 'web1', login: 'ops' } });
    expect(r).toEqual({ required: false });
    const grant = await t.gw.authorizer.authorize(bob.identity, node('web1', 'ops'));
    expect(grant.identity.user).toBe('bob');
  });

  it('the login certificate alone is refused for a node, a database and a cluster (audited), and its SSH form opens no server directly', async () => {
    const alice = clients.get('alice')!;
    for (const target of [
      node('web1', 'ops'),
      {
        kind: 'db',
        name: 'orders',
        labels: {},
        protocol: 'postgres',
        dbUser: 'alice',
        dbName: 'app',
      } as const,
      { kind: 'kube', name: 'prod', labels: {} } as const,
    ]) {
      const err = await t.gw.authorizer.authorize(alice.identity, target).catch((e) => e);
      expect(err.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
      expect(err.message).toContain('require_session_mfa');
      expect(err.details.field).toBe('session_mfa');
    }
    const denied = (await t.gw.audit.search({ types: ['access.denied'], limit: 50 })).events.filter(
      (e) => e.type === 'access.denied' && e.user === 'alice' && e.reason.includes('require_session_mfa'),
    );
    expect(denied.map((e) => ('resource_kind' in e ? e.resource_kind : '')).reverse()).toEqual([
      'node',
      'db',
      'kube',
    ]);

    // The SSH login certificate is marked: OpenSSH and the node service refuse it; the proxy reads it.
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const res = await anon.login({
      user: 'alice',
      password: PASSWORD,
      otp: code('alice'),
      ssh_public_key: sshKey(),
    });
    clock.advance(30_000);
    anon.close();
    const cert = parseSshCertificate(res.ssh_cert!);
    expect(cert.criticalOptions[SSH_SESSION_MFA_OPTION]).toBe('required');
    const caKeys = t.gw.authorities.get('user').map((k) => k.sshPublicKey);
    expect(() => verifySshCertificate(cert, caKeys, clock.now(), { principal: 'ops' })).toThrow(
      /per-session MFA check at the Gatehouse proxy/,
    );
    const viaProxy = verifySshCertificate(cert, caKeys, clock.now(), {
      principal: 'ops',
      acceptSessionMfa: true,
    });
    expect(sshCertificateIdentity(viaProxy).sessionMfa).toBeUndefined();
  });

  it('a wrong code is refused and audited; the challenge is used up by it', async () => {
    const alice = clients.get('alice')!;
    const ch = await alice.client.sessionMfaChallenge({
      target: { kind: 'node', node: 'web1', login: 'ops' },
    });
    expect(ch.required).toBe(true);
    expect(ch.methods).toEqual([{ method: 'totp', devices: ['authenticator app'] }]);
    const wrong = String((Number(code('alice')) + 1) % 1_000_000).padStart(6, '0');
    clock.advance(-30_000); // the right code of this step stays unused
    const err = await alice.client
      .sessionMfaCerts({
        challenge_id: ch.challenge_id!,
        response: { method: 'totp', code: wrong },
        ssh_public_key: sshKey(),
      })
      .catch(failure);
    expect(err).toBe('GH_ERR_SECOND_FACTOR_INVALID');
    expect(await lastMfa()).toMatchObject({
      type: 'mfa.session',
      success: false,
      user: 'alice',
      target_kind: 'node',
      target: 'web1',
      login: 'ops',
      method: 'totp',
      reason: 'invalid',
      code: 'GH1003W',
    });
    // A code no device takes names no device.
    expect(await lastMfa()).not.toHaveProperty('device');
    const again = await alice.client
      .sessionMfaCerts({ challenge_id: ch.challenge_id!, response: { method: 'totp', code: code('alice') } })
      .catch(failure);
    expect(again).toBe('GH_ERR_SECOND_FACTOR_INVALID');
    expect(await lastMfa()).toMatchObject({
      success: false,
      reason: 'challenge_invalid',
    });
  });

  it('the right code gets a 1-minute SSH certificate for that node login only; the session it opens outlives the minute', async () => {
    const alice = clients.get('alice')!;
    const res = await check(
      alice.client,
      { kind: 'node', node: 'web1', login: 'ops' },
      { ssh_public_key: sshKey() },
    );
    expect(Date.parse(res.expires) - clock.now().getTime()).toBe(60_000);
    expect(res.session_expires).toBe(alice.identity.expires.toISOString());
    expect(res.device).toEqual({ method: 'totp', name: 'authenticator app', id: 'totp' });
    const cert = parseSshCertificate(res.ssh_cert!);
    expect(cert.principals).toEqual(['ops']);
    expect(cert.criticalOptions[SSH_SESSION_MFA_OPTION]).toBe('{"kind":"node","node":"web1","login":"ops"}');
    const identity = sshCertificateIdentity(cert);
    expect(identity.sessionMfa?.target).toEqual({ kind: 'node', node: 'web1', login: 'ops' });
    expect(await lastMfa()).toMatchObject({
      success: true,
      user: 'alice',
      target: 'web1',
      login: 'ops',
      method: 'totp',
      device: 'authenticator app',
      mfa_device: { method: 'totp', name: 'authenticator app', id: 'totp' },
      code: 'GH1003I',
    });

    // Another node, another login: refused.
    for (const other of [node('web2', 'ops'), node('web1', 'root')]) {
      const err = await t.gw.authorizer.authorize(identity, other).catch((e) => e);
      expect(err.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
      expect(err.message).toContain('MFA check was for ops@web1');
    }
    const grant = await t.gw.authorizer.authorize(identity, node('web1', 'ops'));
    // The session's end is the login's (or max_session_ttl), not the certificate's minute.
    expect(grant.expires.getTime()).toBeGreaterThan(clock.now().getTime() + 60 * 60_000);

    clock.advance(61_000);
    const late = await t.gw.authorizer.authorize(identity, node('web1', 'ops')).catch((e) => e);
    expect(late.code).toBe('GH_ERR_CERT_EXPIRED');
    expect(await t.gw.authorizer.recheck(grant)).toHaveProperty('options');
  });

  it('a TLS certificate for a database user is routed and bound; another user or database is refused', async () => {
    const alice = clients.get('alice')!;
    const res = await check(
      alice.client,
      { kind: 'db', name: 'orders', user: 'alice' },
      { tls_public_key: newTlsKey().publicPem },
    );
    clock.advance(30_000);
    const identity = t.gw.authorizer.identityFromCert(new X509Certificate(res.tls_cert!));
    expect(identity.route).toEqual({ kind: 'db', name: 'orders', user: 'alice', protocol: 'postgres' });
    expect(identity.sessionMfa?.target).toEqual({ kind: 'db', name: 'orders', user: 'alice' });
    const db = (dbUser: string) =>
      ({ kind: 'db', name: 'orders', labels: {}, protocol: 'postgres', dbUser, dbName: 'app' }) as const;
    expect((await t.gw.authorizer.authorize(identity, db('alice'))).target.kind).toBe('db');
    const err = await t.gw.authorizer.authorize(identity, db('bob')).catch((e) => e);
    expect(err.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
  });

  it('the web terminal token is single-use and for its user only', async () => {
    const alice = clients.get('alice')!;
    const res = await check(alice.client, { kind: 'node', node: 'web1', login: 'ops' });
    clock.advance(30_000);
    expect(res.ssh_cert).toBeUndefined();
    expect(await t.gw.sessionMfa.redeemToken(res.mfa_token!, 'bob').catch(failure)).toBe(
      'GH_ERR_SESSION_MFA_REQUIRED',
    );
    // bob's attempt used it up.
    expect(await t.gw.sessionMfa.redeemToken(res.mfa_token!, 'alice').catch(failure)).toBe(
      'GH_ERR_SESSION_MFA_REQUIRED',
    );
    const res2 = await check(alice.client, { kind: 'node', node: 'web1', login: 'ops' });
    clock.advance(30_000);
    const id = await t.gw.sessionMfa.redeemToken(res2.mfa_token!, 'alice');
    expect(id.sessionMfa?.target).toEqual({ kind: 'node', node: 'web1', login: 'ops' });
    expect(await t.gw.sessionMfa.redeemToken(res2.mfa_token!, 'alice').catch(failure)).toBe(
      'GH_ERR_SESSION_MFA_REQUIRED',
    );
  });
});
