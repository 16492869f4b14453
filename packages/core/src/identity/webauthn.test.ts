import { describe, expect, it } from 'vitest';
import { rejection, userFixture } from '../testing/users.js';
import type { WebAuthnDeviceRecord } from './types.js';
import { relyingPartyFor, WebAuthnRefusal } from './webauthn.js';

/**
 * The challenge rules, below the signature check: a browser answer is
 * refused before any verification when the challenge it carries is not an
 * open one for the same user, purpose and scope (Chromium tests in
 * packages/web/test/webauthn.test.ts cover real authenticators).
 */
describe('WebAuthn challenges', () => {
  const f = userFixture();
  const rp = () => relyingPartyFor('gatehouse.example.com:443', 'acme');

  async function withKey() {
    const users = f.service({}, { relyingParty: rp });
    await f.enrolled(users);
    const key: WebAuthnDeviceRecord = {
      kind: 'webauthn',
      id: 'k1',
      name: 'blue key',
      credentialId: 'Y3JlZA',
      publicKey: 'AAAA',
      counter: 0,
      transports: ['usb'],
      passkey: false,
      addedAt: f.clock.now().toISOString(),
    };
    await users.mfa.add('alice', key, { actor: 'alice' });
    return users;
  }

  /** What a browser would send back for `challenge` (the signature is never reached). */
  function answer(challenge: string, type = 'webauthn.get') {
    const clientData = { type, challenge, origin: 'https://gatehouse.example.com' };
    return {
      id: 'Y3JlZA',
      rawId: 'Y3JlZA',
      type: 'public-key' as const,
      response: {
        clientDataJSON: Buffer.from(JSON.stringify(clientData)).toString('base64url'),
        authenticatorData: '',
        signature: '',
      },
      clientExtensionResults: {},
    };
  }

  async function refused(p: Promise<unknown>): Promise<string> {
    const e = await rejection(p);
    expect(e).toBeInstanceOf(WebAuthnRefusal);
    return (e as WebAuthnRefusal).reason;
  }

  it('names the user’s keys and the gateway’s RP id in the options', async () => {
    const users = await withKey();
    const o = await users.webauthn.beginAssertion({ user: 'alice' });
    expect(o.rpId).toBe('gatehouse.example.com');
    expect(o.allowCredentials?.map((c) => c.id)).toEqual(['Y3JlZA']);
    const p = await users.webauthn.beginAssertion();
    expect(p.allowCredentials ?? []).toEqual([]);
    expect(p.userVerification).toBe('required');
  });

  it('a challenge is good for one try, whatever that try’s outcome', async () => {
    const users = await withKey();
    const o = await users.webauthn.beginAssertion({ user: 'alice' });
    // The first try fails at the signature: the challenge is gone anyway.
    expect(
      await refused(users.webauthn.finishAssertion(answer(o.challenge) as never, { user: 'alice' })),
    ).toBe('webauthn_invalid');
    expect(
      await refused(users.webauthn.finishAssertion(answer(o.challenge) as never, { user: 'alice' })),
    ).toBe('webauthn_challenge_invalid');
  });

  it('refuses a challenge of another user, scope or purpose, an expired one, and one never issued', async () => {
    const users = await withKey();
    const finish = (c: string, opts: { user?: string; scope?: string }) =>
      refused(users.webauthn.finishAssertion(answer(c) as never, opts));
    const a = await users.webauthn.beginAssertion({ user: 'alice' });
    expect(await finish(a.challenge, { user: 'bob' })).toBe('webauthn_challenge_invalid');
    const b = await users.webauthn.beginAssertion({ user: 'alice', scope: 'session:node-1' });
    expect(await finish(b.challenge, { user: 'alice', scope: 'session:node-2' })).toBe(
      'webauthn_challenge_invalid',
    );
    const c = await users.webauthn.beginAssertion({ user: 'alice' });
    expect(await finish(c.challenge, {})).toBe('webauthn_challenge_invalid');
    const d = await users.webauthn.beginAssertion({ user: 'alice' });
    f.clock.advance(5 * 60_000);
    expect(await finish(d.challenge, { user: 'alice' })).toBe('webauthn_challenge_invalid');
    expect(await finish('bm90LWlzc3VlZA', { user: 'alice' })).toBe('webauthn_challenge_invalid');
    // A registration challenge is no assertion challenge.
    const r = await users.webauthn.beginRegistration('alice', { passkey: false });
    expect(r.excludeCredentials?.map((x) => x.id)).toEqual(['Y3JlZA']);
    expect(await finish(r.challenge, { user: 'alice' })).toBe('webauthn_challenge_invalid');
  });

  it('security keys are unavailable without a DNS name in public_addr', async () => {
    const users = f.service({}, { relyingParty: () => relyingPartyFor('127.0.0.1:3080', 'acme') });
    await f.enrolled(users);
    expect((await rejection(users.webauthn.beginAssertion())).code).toBe('GH_ERR_WEBAUTHN_UNAVAILABLE');
  });
});
