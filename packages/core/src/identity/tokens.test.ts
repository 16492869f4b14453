import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import { codeAt, PASSWORD, rejection, sealer, userFixture } from '../testing/users.js';

describe('UserService', () => {
  const f = userFixture();

  describe('tokens', () => {
    it('inspect offers a TOTP device; accept sets the password and enrolls it', async () => {
      const users = f.service();
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      const info = await users.inspectToken(token?.token ?? '');
      expect(info).toMatchObject({ user: 'alice', kind: 'invite', expires: token?.expires });
      expect(info.totp?.uri).toBe(
        `otpauth://totp/acme:alice?issuer=acme&secret=${info.totp?.secret}&algorithm=SHA1&digits=6&period=30`,
      );
      // Inspecting twice shows the same secret (it is fixed at token creation).
      expect((await users.inspectToken(token?.token ?? '')).totp?.secret).toBe(info.totp?.secret);
      const u = await users.acceptToken(token?.token ?? '', {
        password: PASSWORD,
        otp: codeAt(info.totp?.secret ?? '', f.clock.now()),
        remoteAddr: '10.0.0.9',
      });
      expect(u.passwordHash).toMatch(/^\$scrypt\$/);
      expect(u.totp?.lastCounter).toBe(Math.floor(f.clock.now().getTime() / 30_000));
      expect(sealer.open(u.totp?.sealedSecret ?? '', 'users/alice/totp')).toBe(info.totp?.secret);
      expect(f.audit.last('user.login')).toMatchObject({
        success: true,
        method: 'invite',
        mfa: true,
        user: 'alice',
        addr: { remote: '10.0.0.9' },
      });
      // One time only.
      const again = await rejection(
        users.acceptToken(token?.token ?? '', { password: PASSWORD, otp: '000000' }),
      );
      expect(again.code).toBe('GH_ERR_TOKEN_INVALID');
      expect(again.hint).toMatch(/ask an admin for a new one/);
      expect(await f.backend.range('tokens/')).toEqual([]);
    });

    it('a bad password or code does not consume the token', async () => {
      const users = f.service();
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      const t = token?.token ?? '';
      const secret = (await users.inspectToken(t)).totp?.secret ?? '';
      expect(
        (await rejection(users.acceptToken(t, { password: 'short', otp: codeAt(secret, f.clock.now()) })))
          .code,
      ).toBe('GH_ERR_VALIDATION');
      expect((await rejection(users.acceptToken(t, { password: PASSWORD }))).code).toBe(
        'GH_ERR_SECOND_FACTOR_REQUIRED',
      );
      const wrong = codeAt(secret, new Date(f.clock.now().getTime() + 5 * 60_000));
      expect((await rejection(users.acceptToken(t, { password: PASSWORD, otp: wrong }))).code).toBe(
        'GH_ERR_SECOND_FACTOR_INVALID',
      );
      expect(f.audit.find('user.login').map((e) => (e.success ? 'ok' : e.reason))).toEqual([
        'second_factor_required',
        'second_factor_invalid',
      ]);
      const u = await users.acceptToken(t, { password: PASSWORD, otp: codeAt(secret, f.clock.now()) });
      expect(u.totp).toBeDefined();
    });

    it('an invite expires', async () => {
      const users = f.service({ secondFactor: 'off', inviteTtlMs: 3_600_000 });
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      f.clock.advance(3_600_000 - 1);
      expect((await users.inspectToken(token?.token ?? '')).user).toBe('alice');
      f.clock.advance(1);
      const e = await rejection(users.acceptToken(token?.token ?? '', { password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_TOKEN_INVALID');
      expect(e.hint).toMatch(/ask an admin/);
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      expect((await users.get('alice'))?.passwordHash).toBeUndefined();
    });

    it('checks expiry itself when the backend has not expired the token yet', async () => {
      // A backend on a clock that lags behind (another node, or a sweep not run yet).
      const lagging = new MemoryBackend({ clock: new ManualClock(f.clock.now()), sweepIntervalMs: 0 });
      const users = f.service({ secondFactor: 'off', inviteTtlMs: 3_600_000 }, { backend: lagging });
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      f.clock.advance(3_600_000);
      expect(await lagging.range('tokens/')).toHaveLength(1);
      const e = await rejection(users.acceptToken(token?.token ?? '', { password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_TOKEN_INVALID');
      expect(f.audit.last('user.login')).toMatchObject({
        success: false,
        reason: 'token_expired',
        method: 'invite',
      });
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      await lagging.close();
    });

    it('unknown and malformed tokens are invalid', async () => {
      const users = f.service();
      for (const t of ['', 'x', 'A'.repeat(43), '../../users/alice'.padEnd(43, 'a')]) {
        expect((await rejection(users.acceptToken(t, { password: PASSWORD }))).code).toBe(
          'GH_ERR_TOKEN_INVALID',
        );
      }
      expect(f.audit.last('user.login')).toMatchObject({ success: false, reason: 'token_invalid' });
    });

    it('two concurrent accepts of one token: exactly one wins', async () => {
      const users = f.service({ secondFactor: 'off' });
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      const t = token?.token ?? '';
      const results = await Promise.allSettled([
        users.acceptToken(t, { password: `${PASSWORD} one` }),
        users.acceptToken(t, { password: `${PASSWORD} two` }),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(ok).toHaveLength(1);
      expect(failed).toHaveLength(1);
      expect(failed[0]?.reason).toMatchObject({ code: 'GH_ERR_TOKEN_INVALID' });
      // The stored password is the winner's.
      const winner = results.findIndex((r) => r.status === 'fulfilled') === 0 ? 'one' : 'two';
      const u = await users.authenticate({ user: 'alice', password: `${PASSWORD} ${winner}` });
      expect(u.name).toBe('alice');
    });

    it('a new token replaces older ones; a reset replaces password and device', async () => {
      const users = f.service();
      const oldSecret = await f.enrolled(users);
      const r1 = await users.createToken('alice', 'reset', 'admin');
      const r2 = await users.createToken('alice', 'reset', 'admin');
      expect(r2.expires).toBe(new Date(f.clock.now().getTime() + 3_600_000).toISOString());
      expect((await rejection(users.inspectToken(r1.token))).code).toBe('GH_ERR_TOKEN_INVALID');
      // Until accepted, the old password and device still work.
      await users.authenticate({ user: 'alice', password: PASSWORD, otp: codeAt(oldSecret, f.clock.now()) });
      const info = await users.inspectToken(r2.token);
      expect(info.kind).toBe('reset');
      expect(info.totp?.secret).not.toBe(oldSecret);
      f.clock.advance(30_000);
      await users.acceptToken(r2.token, {
        password: `${PASSWORD} new`,
        otp: codeAt(info.totp?.secret ?? '', f.clock.now()),
      });
      expect(f.audit.last('user.login')).toMatchObject({ success: true, method: 'reset' });
      f.clock.advance(30_000);
      expect(
        (
          await rejection(
            users.authenticate({
              user: 'alice',
              password: PASSWORD,
              otp: codeAt(info.totp?.secret ?? '', f.clock.now()),
            }),
          )
        ).code,
      ).toBe('GH_ERR_BAD_CREDENTIALS');
      expect(
        (
          await rejection(
            users.authenticate({
              user: 'alice',
              password: `${PASSWORD} new`,
              otp: codeAt(oldSecret, f.clock.now()),
            }),
          )
        ).code,
      ).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      f.clock.advance(30_000);
      await users.authenticate({
        user: 'alice',
        password: `${PASSWORD} new`,
        otp: codeAt(info.totp?.secret ?? '', f.clock.now()),
      });
    });

    it('tokens for unknown users are refused', async () => {
      expect((await rejection(f.service().createToken('ghost', 'reset', 'admin'))).code).toBe(
        'GH_ERR_NOT_FOUND',
      );
    });
  });
});
