/**
 * Security keys as the per-session MFA check, through the real HTTP API:
 * the challenge offers `webauthn` with assertion options begun for the
 * target's scope, and an assertion that answers another target's challenge
 * is refused (audited) before any signature is looked at, its challenge used
 * up. The browser's real assertion (a CDP virtual authenticator) opening a
 * web terminal is in packages/web/test/session-mfa-webauthn.test.ts.
 */
import { createHash } from 'node:crypto';
import { type TOTP, URI } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatehouseClient, isGatehouseError, ManualClock, type MfaTarget } from '../src/index.js';
import { sessionScope } from '../src/mfa/index.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

const PASSWORD = 'a long enough passphrase';
const CREDENTIAL_ID = Buffer.from('alice-blue-key').toString('base64url');
const web1: MfaTarget = { kind: 'node', node: 'web1', login: 'ops' };
const web2: MfaTarget = { kind: 'node', node: 'web2', login: 'ops' };

/** An assertion that claims `challenge` (its signature is never reached: the challenge decides first). */
function assertionFor(challenge: string, origin: string) {
  const clientData = { type: 'webauthn.get', challenge, origin, crossOrigin: false };
  return {
    id: CREDENTIAL_ID,
    rawId: CREDENTIAL_ID,
    type: 'public-key',
    clientExtensionResults: {},
    response: {
      clientDataJSON: Buffer.from(JSON.stringify(clientData)).toString('base64url'),
      authenticatorData: Buffer.alloc(37).toString('base64url'),
      signature: Buffer.alloc(64).toString('base64url'),
    },
  };
}

describe('per-session MFA with a security key (scope binding)', () => {
  let t: TestGateway;
  let clock: ManualClock;
  let alice: GatehouseClient;
  let origin: string;
  const lastMfa = async () => (await t.gw.audit.search({ types: ['mfa.session'], limit: 1 })).events[0];

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    t = await startGateway({ clock, secondFactor: 'otp', values: { public_addr: 'localhost:0' } });
    origin = t.gw.users.webauthn.relyingParty().origins[0]!;
    await t.gw.admin.putRole(
      'kind: role\nname: prod-mfa\nallow:\n  logins: [ops]\n  node_labels: { "*": "*" }\noptions:\n  require_session_mfa: true\n',
      { create: true },
    );
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const { token } = await t.gw.admin.createUser({ name: 'alice', roles: ['prod-mfa'], traits: {} });
    const totp = URI.parse((await anon.inspectInvite(token!.token)).totp!.uri) as TOTP;
    const code = () => {
      clock.advance(30_000);
      return totp.generate({ timestamp: clock.now().getTime() });
    };
    await anon.acceptInvite(token!.token, { password: PASSWORD, otp: code() });
    const key = newTlsKey();
    const res = await anon.login({
      user: 'alice',
      password: PASSWORD,
      otp: code(),
      tls_public_key: key.publicPem,
    });
    anon.close();
    alice = new GatehouseClient({
      proxy: `127.0.0.1:${t.port}`,
      caPem: t.caPem,
      certPem: res.tls_cert!,
      keyPem: key.privatePem,
    });
    // A registered key as the account page stores it (registration itself is the browser test's).
    const item = await t.gw.backend.get('users/alice');
    const rec = JSON.parse(item!.value);
    rec.mfaDevices = [
      ...(rec.mfaDevices ?? []),
      {
        kind: 'webauthn',
        id: 'key-1',
        name: 'blue key',
        credentialId: CREDENTIAL_ID,
        publicKey: Buffer.alloc(77).toString('base64url'),
        counter: 0,
        transports: ['usb'],
        passkey: false,
        backedUp: false,
        addedAt: clock.now().toISOString(),
      },
    ];
    await t.gw.backend.put('users/alice', JSON.stringify(rec));
  });

  afterAll(async () => {
    alice?.close();
    await t?.close();
  });

  it('the scope names the target in canonical JSON', () => {
    expect(sessionScope(web1)).toBe('session:{"kind":"node","node":"web1","login":"ops"}');
    expect(sessionScope({ kind: 'db', name: 'orders', user: 'alice' })).not.toBe(
      sessionScope({ kind: 'db', name: 'orders', user: 'bob' }),
    );
  });

  it('offers the key with assertion options begun for this target only', async () => {
    const ch = await alice.sessionMfaChallenge({ target: web1 });
    expect(ch.methods?.map((m) => [m.method, m.devices])).toEqual([
      ['totp', ['authenticator app']],
      ['webauthn', ['blue key']],
    ]);
    const data = ch.methods![1]!.data as {
      challenge: string;
      allowCredentials: { id: string }[];
      rpId: string;
    };
    expect(data.rpId).toBe('localhost');
    expect(data.allowCredentials.map((c) => c.id)).toEqual([CREDENTIAL_ID]);
    // The service stored the assertion challenge with the target's scope.
    const stored = await t.gw.backend.get(
      `webauthn_challenges/${createHash('sha256').update(data.challenge).digest('hex')}`,
    );
    expect(JSON.parse(stored!.value)).toMatchObject({
      purpose: 'assert',
      user: 'alice',
      scope: sessionScope(web1),
    });
  });

  it("an assertion made for one target's challenge does not answer another's (audited; both used up)", async () => {
    const forWeb1 = await alice.sessionMfaChallenge({ target: web1 });
    const forWeb2 = await alice.sessionMfaChallenge({ target: web2 });
    const web1Challenge = (
      forWeb1.methods!.find((m) => m.method === 'webauthn')!.data as { challenge: string }
    ).challenge;
    const err = await alice
      .sessionMfaCerts({
        challenge_id: forWeb2.challenge_id!,
        response: { method: 'webauthn', credential: assertionFor(web1Challenge, origin) },
      })
      .catch((e) => e);
    expect(isGatehouseError(err) && err.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
    expect(await lastMfa()).toMatchObject({
      type: 'mfa.session',
      success: false,
      user: 'alice',
      target: 'web2',
      method: 'webauthn',
      reason: 'challenge_invalid',
      code: 'GH1003W',
    });
    // The web1 assertion challenge was taken by that try: it cannot be answered for web1 either.
    const again = await alice
      .sessionMfaCerts({
        challenge_id: forWeb1.challenge_id!,
        response: { method: 'webauthn', credential: assertionFor(web1Challenge, origin) },
      })
      .catch((e) => e);
    expect(isGatehouseError(again) && again.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
    expect(await lastMfa()).toMatchObject({ success: false, target: 'web1', reason: 'challenge_invalid' });
  });

  // The CLI's round trip (mfa/browser.ts): a page on the gateway's origin takes one pending check.
  describe('a pending check for the CLI page (/web/mfa)', () => {
    const cb = { redirect_url: 'http://127.0.0.1:4711/callback', state: 'cli-state-0123456789' };
    const idOf = (url: string) => url.slice(url.indexOf('#') + 1);
    const lastLogin = async () => (await t.gw.audit.search({ types: ['user.login'], limit: 1 })).events[0];

    it('is on the RP origin, names the user and target, carries options scoped to the target, and opens once', async () => {
      const ch = await alice.sessionMfaChallenge({ target: web1 });
      const page = await alice.sessionMfaBrowser({ challenge_id: ch.challenge_id!, ...cb });
      expect(page.url.startsWith(`${origin}/web/mfa#`)).toBe(true);
      const first = await t.gw.browserMfa.take(idOf(page.url), {});
      expect(first).toMatchObject({ user: 'alice', purpose: 'session', target: web1, ...cb });
      const challenge = (first.options as { challenge: string }).challenge;
      const stored = await t.gw.backend.get(
        `webauthn_challenges/${createHash('sha256').update(challenge).digest('hex')}`,
      );
      expect(JSON.parse(stored!.value)).toMatchObject({ user: 'alice', scope: sessionScope(web1) });
      // The second open is refused and audited as alice's check for web1.
      const again = await t.gw.browserMfa.take(idOf(page.url), {}).catch((e) => e);
      expect(isGatehouseError(again) && again.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
      expect(again.message).toContain('already used');
      expect(await lastMfa()).toMatchObject({
        success: false,
        user: 'alice',
        target: 'web1',
        reason: 'challenge_invalid',
      });

      // Made on a session page, an assertion is no login's second factor (another purpose): refused, audited.
      const login = await t.gw.users.logins
        .authenticate({
          user: 'alice',
          password: PASSWORD,
          webauthn: assertionFor(challenge, origin) as never,
        })
        .catch((e) => e);
      expect(isGatehouseError(login) && login.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
      expect(await lastLogin()).toMatchObject({
        success: false,
        user: 'alice',
        reason: 'webauthn_challenge_invalid',
      });
    });

    it('expires with the challenge (5 minutes), and is refused as unknown', async () => {
      const ch = await alice.sessionMfaChallenge({ target: web1 });
      const page = await alice.sessionMfaBrowser({ challenge_id: ch.challenge_id!, ...cb });
      clock.advance(5 * 60_000 + 1);
      const late = await t.gw.browserMfa.take(idOf(page.url), {}).catch((e) => e);
      expect(isGatehouseError(late) && late.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
      expect(late.message).toContain('unknown or expired');
      expect(await lastMfa()).toMatchObject({
        success: false,
        user: 'alice',
        target: 'web1',
        reason: 'challenge_invalid',
      });
      const unknown = await t.gw.browserMfa.take('x'.repeat(43), {}).catch((e) => e);
      expect(unknown.message).toContain('unknown or expired');
    });

    it('sends the browser back to a loopback callback only, with a state, for a challenge of the caller', async () => {
      const ch = await alice.sessionMfaChallenge({ target: web1 });
      for (const redirect_url of [
        'https://evil.example/callback',
        'http://10.0.0.1:80/cb',
        'http://u:p@127.0.0.1:1/',
      ]) {
        const e = await alice
          .sessionMfaBrowser({ challenge_id: ch.challenge_id!, redirect_url, state: cb.state })
          .catch((x) => x);
        expect(isGatehouseError(e) && e.code).toBe('GH_ERR_VALIDATION');
      }
      const noState = await alice
        .sessionMfaBrowser({ challenge_id: ch.challenge_id!, redirect_url: cb.redirect_url, state: 'short' })
        .catch((x) => x);
      expect(isGatehouseError(noState) && noState.code).toBe('GH_ERR_VALIDATION');
      const unknown = await alice.sessionMfaBrowser({ challenge_id: 'y'.repeat(32), ...cb }).catch((x) => x);
      expect(isGatehouseError(unknown) && unknown.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
    });
  });
});
