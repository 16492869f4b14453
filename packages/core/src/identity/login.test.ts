import { describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { codeAt, PASSWORD, rejection, userFixture } from '../testing/users.js';

describe('UserService', () => {
  const f = userFixture();

  describe('authenticate', () => {
    it('unknown user and wrong password fail identically', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const unknown = await rejection(users.authenticate({ user: 'nobody', password: PASSWORD }));
      const wrong = await rejection(users.authenticate({ user: 'bob', password: 'wrong password!!' }));
      const invited = await users.create({ name: 'pending', roles: ['access'] }, 'admin');
      expect(invited.token).toBeDefined();
      const noPassword = await rejection(users.authenticate({ user: 'pending', password: PASSWORD }));
      for (const e of [unknown, wrong, noPassword]) {
        expect(e.code).toBe('GH_ERR_BAD_CREDENTIALS');
        expect(e.message).toBe(unknown.message);
        expect(e.hint).toBe(unknown.hint);
        expect(e.details).toBeUndefined();
      }
      expect(f.audit.find('user.login').map((e) => (e.success ? 'ok' : [e.user, e.reason]))).toEqual([
        ['nobody', 'unknown_user'],
        ['bob', 'bad_password'],
        ['pending', 'bad_password'],
      ]);
    });

    it('password-only login succeeds and is audited', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const u = await users.authenticate({ user: 'bob', password: PASSWORD, remoteAddr: '127.0.0.1' });
      expect(u.name).toBe('bob');
      expect(f.audit.last('user.login')).toMatchObject({
        success: true,
        method: 'password',
        mfa: false,
        user: 'bob',
        addr: { remote: '127.0.0.1' },
      });
    });

    it('backs off after repeated failures, doubling, and success resets', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const bad = () => rejection(users.authenticate({ user: 'bob', password: 'not the password' }));
      for (let i = 0; i < 4; i++) expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS');
      expect((await users.get('bob'))?.loginFailures).toEqual({ count: 4 });
      expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS'); // the 5th failure starts the pause
      // Locked: even the right password is refused, and the wait is in the hint.
      const locked = await rejection(users.authenticate({ user: 'bob', password: PASSWORD }));
      expect(locked.code).toBe('GH_ERR_LOGIN_BACKOFF');
      expect(locked.hint).toMatch(/^wait 1m and try again/);
      expect(locked.details).toEqual({ retry_after_s: 60 });
      f.clock.advance(59_000);
      const later = await rejection(users.authenticate({ user: 'bob', password: PASSWORD }));
      expect(later.code).toBe('GH_ERR_LOGIN_BACKOFF');
      expect(later.details).toEqual({ retry_after_s: 1 });
      f.clock.advance(1_000);
      // After the wait, one more failure pauses twice as long.
      expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS');
      f.clock.advance(119_000);
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_LOGIN_BACKOFF',
      );
      f.clock.advance(1_000);
      // Success resets the count: the next failure does not pause.
      await users.authenticate({ user: 'bob', password: PASSWORD });
      expect((await users.get('bob'))?.loginFailures).toBeUndefined();
      expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS');
      expect((await users.get('bob'))?.loginFailures).toEqual({ count: 1 });
      expect(f.audit.find('user.login').filter((e) => !e.success && e.reason === 'backoff')).toHaveLength(3);
    });

    it('pauses an unknown name exactly like a known one, so backoff does not reveal which names exist', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const answers = async (user: string) => {
        const out: string[] = [];
        for (let i = 0; i < 7; i++) {
          const e = await rejection(users.authenticate({ user, password: 'not the password' }));
          out.push(`${e.code} ${e.hint} ${JSON.stringify(e.details)}`);
        }
        return out;
      };
      const known = await answers('bob');
      const unknown = await answers('nobody-at-all');
      expect(unknown).toEqual(known);
      expect(known.filter((a) => a.startsWith('GH_ERR_LOGIN_BACKOFF'))).toHaveLength(2);
      // The pause ends for both alike.
      f.clock.advance(60_000);
      expect((await rejection(users.authenticate({ user: 'nobody-at-all', password: 'x' }))).code).toBe(
        'GH_ERR_BAD_CREDENTIALS',
      );
      expect(
        f.audit
          .find('user.login')
          .filter((e) => !e.success && e.user === 'nobody-at-all')
          .map((e) => !e.success && e.reason),
      ).toEqual([
        'unknown_user',
        'unknown_user',
        'unknown_user',
        'unknown_user',
        'unknown_user',
        'backoff',
        'backoff',
        'unknown_user',
      ]);
    });

    it('caps the pause at lockoutMaxMs', async () => {
      const users = f.service({
        secondFactor: 'off',
        maxLoginAttempts: 1,
        lockoutBaseMs: 60_000,
        lockoutMaxMs: 150_000,
      });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const waits: unknown[] = [];
      for (let i = 0; i < 3; i++) {
        await rejection(users.authenticate({ user: 'bob', password: 'not the password' }));
        waits.push(
          (await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).details?.retry_after_s,
        );
        f.clock.advance(200_000);
      }
      expect(waits).toEqual([60, 120, 150]);
    });

    it('requires, checks and consumes TOTP codes', async () => {
      const users = f.service();
      const secret = await f.enrolled(users);
      const missing = await rejection(users.authenticate({ user: 'alice', password: PASSWORD }));
      expect(missing.code).toBe('GH_ERR_SECOND_FACTOR_REQUIRED');
      const bad = await rejection(
        users.authenticate({
          user: 'alice',
          password: PASSWORD,
          otp: '000000' === codeAt(secret, f.clock.now()) ? '111111' : '000000',
        }),
      );
      expect(bad.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      expect((await users.get('alice'))?.loginFailures?.count).toBe(1);
      const code = codeAt(secret, f.clock.now());
      const u = await users.authenticate({ user: 'alice', password: PASSWORD, otp: code });
      expect(u.loginFailures).toBeUndefined();
      expect(u.totp?.lastCounter).toBe(Math.floor(f.clock.now().getTime() / 30_000));
      expect(f.audit.last('user.login')).toMatchObject({ success: true, mfa: true });
      f.clock.advance(5_000);
      const reused = await rejection(users.authenticate({ user: 'alice', password: PASSWORD, otp: code }));
      expect(reused.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      expect(reused.details).toEqual({ reason: 'second_factor_reused' });
      expect(f.audit.last('user.login')).toMatchObject({ success: false, reason: 'second_factor_reused' });
      expect(
        f.audit
          .find('user.login')
          .filter((e) => !e.success)
          .map((e) => (e.success ? '' : e.reason)),
      ).toEqual(['second_factor_required', 'second_factor_invalid', 'second_factor_reused']);
    });

    it('concurrent logins with one TOTP code: only one succeeds', async () => {
      const users = f.service();
      const secret = await f.enrolled(users);
      const code = codeAt(secret, f.clock.now());
      const results = await Promise.allSettled([
        users.authenticate({ user: 'alice', password: PASSWORD, otp: code }),
        users.authenticate({ user: 'alice', password: PASSWORD, otp: code }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failed?.reason).toMatchObject({ details: { reason: 'second_factor_reused' } });
    });

    it('a user without a device is told to ask for a reset', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const strict = f.service({ secondFactor: 'otp' });
      const e = await rejection(strict.authenticate({ user: 'bob', password: PASSWORD, otp: '123456' }));
      expect(e.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
      expect(e.hint).toMatch(/reset/);
      expect(f.audit.last('user.login')).toMatchObject({
        success: false,
        reason: 'second_factor_not_enrolled',
      });
    });

    it('refuses users targeted by an active lock, directly or through a role', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const lock = await f.locks.create(
        { target: { user: 'bob' }, message: 'incident 7', ttlMs: 60_000 },
        'admin',
      );
      const e = await rejection(users.authenticate({ user: 'bob', password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_USER_LOCKED');
      expect(e.message).toBe('your access is locked: incident 7');
      expect(e.details).toEqual({ lock_id: lock.id });
      expect(f.audit.last('user.login')).toMatchObject({ success: false, reason: 'user_locked' });
      f.clock.advance(60_000);
      await users.authenticate({ user: 'bob', password: PASSWORD });
      await f.locks.create({ target: { role: 'access' } }, 'admin');
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_USER_LOCKED',
      );
    });

    it('fails closed when locks cannot be checked', async () => {
      const users = f.service(
        { secondFactor: 'off' },
        {
          locks: {
            find: async () => {
              throw new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', 'down');
            },
          },
        },
      );
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_BACKEND_UNAVAILABLE',
      );
      expect(f.audit.find('user.login').filter((e) => e.success)).toEqual([]);
    });
  });
});
