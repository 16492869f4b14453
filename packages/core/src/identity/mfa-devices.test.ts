import { describe, expect, it } from 'vitest';
import { codeAt, PASSWORD, rejection, userFixture } from '../testing/users.js';
import { ENROLLED_TOTP_ID } from './mfa-devices.js';
import type { UserRecord, WebAuthnDeviceRecord } from './types.js';
import { counterWentUp, relyingPartyFor } from './webauthn.js';

const by = { actor: 'alice', remoteAddr: '127.0.0.1' };

describe('MFA devices', () => {
  const f = userFixture();

  /** Adds a TOTP device through begin + finish, as the CLI does; returns its secret. */
  async function addTotp(users: ReturnType<typeof f.service>, name: string): Promise<string> {
    const begun = await users.mfa.beginTotp('alice');
    f.clock.advance(30_000);
    await users.mfa.finishTotp(
      'alice',
      { pending_id: begun.pending_id, name, code: codeAt(begun.secret, f.clock.now()) },
      by,
    );
    f.clock.advance(30_000);
    return begun.secret;
  }

  it('lists the enrolled device, adds named TOTP devices, and logs in with any of them', async () => {
    const users = f.service();
    await f.enrolled(users);
    const phone2 = await addTotp(users, 'backup phone');
    const list = await users.mfa.list('alice');
    expect(list.map((d) => [d.id === ENROLLED_TOTP_ID ? 'enrolled' : 'added', d.kind, d.name])).toEqual([
      ['enrolled', 'totp', 'authenticator app'],
      ['added', 'totp', 'backup phone'],
    ]);
    expect(JSON.stringify(list)).not.toMatch(/sealed|secret/i);
    await users.authenticate({ user: 'alice', password: PASSWORD, otp: codeAt(phone2, f.clock.now()) });
    expect(f.audit.last('user.login')).toMatchObject({
      success: true,
      mfa: true,
      mfa_device: { method: 'totp', name: 'backup phone', id: list[1]!.id },
    });
    expect(f.audit.last('mfa.add')).toMatchObject({
      success: true,
      user: 'alice',
      name: 'alice',
      mfa_device: { method: 'totp', name: 'backup phone' },
    });
    // The code is used up on that device only.
    const again = await rejection(
      users.authenticate({ user: 'alice', password: PASSWORD, otp: codeAt(phone2, f.clock.now()) }),
    );
    expect(again.details).toEqual({ reason: 'second_factor_reused' });
    expect(f.audit.last('user.login')).toMatchObject({
      success: false,
      mfa_device: { name: 'backup phone' },
    });
  });

  it('refuses a wrong confirmation code, a reused setup and a duplicate name, and audits each', async () => {
    const users = f.service();
    await f.enrolled(users);
    const begun = await users.mfa.beginTotp('alice');
    const wrong = await rejection(
      users.mfa.finishTotp('alice', { pending_id: begun.pending_id, name: 'x', code: '000000' }, by),
    );
    expect(wrong.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
    const dup = await rejection(
      users.mfa.finishTotp(
        'alice',
        {
          pending_id: begun.pending_id,
          name: 'Authenticator App',
          code: codeAt(begun.secret, f.clock.now()),
        },
        by,
      ),
    );
    expect(dup.code).toBe('GH_ERR_ALREADY_EXISTS');
    await users.mfa.finishTotp(
      'alice',
      { pending_id: begun.pending_id, name: 'second', code: codeAt(begun.secret, f.clock.now()) },
      by,
    );
    const reused = await rejection(
      users.mfa.finishTotp(
        'alice',
        { pending_id: begun.pending_id, name: 'third', code: codeAt(begun.secret, f.clock.now()) },
        by,
      ),
    );
    expect(reused.code).toBe('GH_ERR_TOKEN_INVALID');
    // Bob cannot finish Alice's setup.
    const other = await users.mfa.beginTotp('alice');
    const bob = await rejection(
      users.mfa.finishTotp('bob', { pending_id: other.pending_id, name: 'y', code: '123456' }, by),
    );
    expect(bob.code).toBe('GH_ERR_TOKEN_INVALID');
    expect(f.audit.find('mfa.add').map((e) => (e.success ? 'ok' : e.reason))).toEqual([
      'invalid',
      'duplicate',
      'ok',
      'challenge_invalid',
      'challenge_invalid',
    ]);
  });

  it('refuses to remove the last device while a second factor is required, and allows it when not', async () => {
    const users = f.service();
    await f.enrolled(users);
    await addTotp(users, 'spare');
    await users.mfa.remove('alice', 'spare', by);
    expect(f.audit.last('mfa.remove')).toMatchObject({ success: true, mfa_device: { name: 'spare' } });
    const last = await rejection(users.mfa.remove('alice', ENROLLED_TOTP_ID, by));
    expect(last.code).toBe('GH_ERR_MFA_LAST_FACTOR');
    expect(last.message).toMatch(/last second-factor device/);
    expect(f.audit.last('mfa.remove')).toMatchObject({
      success: false,
      reason: 'last_factor',
      mfa_device: { id: ENROLLED_TOTP_ID },
    });
    expect((await users.mfa.list('alice')).length).toBe(1);
    const missing = await rejection(users.mfa.remove('alice', 'nope', by));
    expect(missing.code).toBe('GH_ERR_NOT_FOUND');

    const relaxed = f.service({ secondFactor: 'off' });
    await relaxed.mfa.remove('alice', ENROLLED_TOTP_ID, by);
    expect((await relaxed.get('alice'))?.totp).toBeUndefined();
  });

  it('a login with no device left is refused as not enrolled', async () => {
    const strict = f.service();
    const secret = await f.enrolled(strict);
    await f.service({ secondFactor: 'off' }).mfa.remove('alice', ENROLLED_TOTP_ID, by);
    const e = await rejection(
      strict.authenticate({ user: 'alice', password: PASSWORD, otp: codeAt(secret, f.clock.now()) }),
    );
    expect(e.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
  });

  it('deleting the user deletes its devices and its passkey lookup', async () => {
    const users = f.service();
    await f.enrolled(users);
    await addTotp(users, 'spare');
    const rec = (await users.get('alice')) as UserRecord;
    await f.backend.put(`webauthn_handles/${rec.id}`, JSON.stringify({ user: 'alice' }));
    await users.delete('alice', 'admin');
    expect(await f.backend.get(`webauthn_handles/${rec.id}`)).toBeUndefined();
    await f.enrolled(users);
    expect((await users.mfa.list('alice')).map((d) => d.name)).toEqual(['authenticator app']);
  });

  it('a reset link replaces every device: the lost phone, and keys and passkeys with it', async () => {
    const users = f.service();
    await f.enrolled(users);
    await addTotp(users, 'spare');
    const key: WebAuthnDeviceRecord = {
      kind: 'webauthn',
      id: 'k1',
      name: 'laptop passkey',
      credentialId: 'AAAA',
      publicKey: 'AAAA',
      counter: 0,
      transports: [],
      passkey: true,
      addedAt: f.clock.now().toISOString(),
    };
    await users.mfa.add('alice', key, by);
    const reset = await users.createToken('alice', 'reset', 'admin');
    const secret = (await users.inspectToken(reset.token)).totp!.secret;
    await users.acceptToken(reset.token, { password: PASSWORD, otp: codeAt(secret, f.clock.now()) });
    expect((await users.mfa.list('alice')).map((d) => d.name)).toEqual(['authenticator app']);
    expect(
      f.audit
        .find('mfa.remove')
        .filter((e) => e.success)
        .map((e) => e.success && e.mfa_device.name),
    ).toEqual(['spare', 'laptop passkey']);
  });

  it('a user SSO made gets no devices (a passkey would bypass the identity provider)', async () => {
    const users = f.service();
    await users.upsertSso({
      name: 'sam',
      roles: ['access'],
      traits: {},
      sso: {
        connector: 'corp',
        kind: 'oidc',
        subject: 's1',
        expires: new Date(Date.now() + 3600_000).toISOString(),
      },
    });
    const key: WebAuthnDeviceRecord = {
      kind: 'webauthn',
      id: 'k1',
      name: 'key',
      credentialId: 'AAAA',
      publicKey: 'AAAA',
      counter: 0,
      transports: [],
      passkey: true,
      addedAt: f.clock.now().toISOString(),
    };
    const e = await rejection(users.mfa.add('sam', key, { actor: 'sam' }));
    expect(e.code).toBe('GH_ERR_VALIDATION');
    expect((await users.get('sam'))?.mfaDevices).toBeUndefined();
  });
});

describe('WebAuthn policy', () => {
  it('the sign counter must go up, except 0 after 0 (authenticators without a counter)', () => {
    expect(counterWentUp(0, 0)).toBe(true);
    expect(counterWentUp(0, 1)).toBe(true);
    expect(counterWentUp(5, 6)).toBe(true);
    expect(counterWentUp(5, 5)).toBe(false);
    expect(counterWentUp(5, 4)).toBe(false);
    expect(counterWentUp(5, 0)).toBe(false);
  });

  it('the RP id and origin come from public_addr; an IP address cannot be an RP id', () => {
    expect(relyingPartyFor('gatehouse.example.com:443', 'acme')).toEqual({
      id: 'gatehouse.example.com',
      name: 'Gatehouse acme',
      origins: ['https://gatehouse.example.com'],
    });
    expect(relyingPartyFor('LocalHost:3080', 'acme').origins).toEqual(['https://localhost:3080']);
    for (const bad of ['127.0.0.1:3080', '[::1]:3080', 'nope']) {
      expect(() => relyingPartyFor(bad, 'acme')).toThrow(/DNS name in public_addr/);
    }
  });
});
