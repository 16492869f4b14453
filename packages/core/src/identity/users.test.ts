import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { Secret, TOTP } from 'otpauth';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError } from '../errors.js';
import { RoleService } from '../rbac/roles.js';
import { LockService } from './locks.js';
import type { UserRecord } from './types.js';
import { type UserPolicy, UserService } from './users.js';

/** Pass-through sealer that still checks the AAD, so a mix-up of seal contexts fails the tests. */
const sealer: Sealer = {
  seal: (plain, aad) => JSON.stringify({ plain, aad }),
  open: (sealed, aad) => {
    const o = JSON.parse(sealed) as { plain: string; aad: string };
    if (o.aad !== aad) throw new GatehouseError('GH_ERR_INTERNAL', `sealed for ${o.aad}, opened as ${aad}`);
    return o.plain;
  },
};

function codeAt(secret: string, at: Date): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at.getTime() });
}

async function rejection(p: Promise<unknown>): Promise<GatehouseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GatehouseError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

const PASSWORD = 'correct horse battery staple';

describe('UserService', () => {
  let clock: ManualClock;
  let backend: MemoryBackend;
  let audit: MemoryAuditLog;
  let locks: LockService;
  let roles: RoleService;

  const service = (policy: Partial<UserPolicy> = {}) =>
    new UserService({ backend, sealer, clock, audit, clusterName: 'acme', locks, roles, policy });

  beforeEach(() => {
    clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 5));
    backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
    audit = new MemoryAuditLog({ clock: () => clock.now() });
    locks = new LockService({ backend, clock, audit });
    roles = new RoleService({ backend, clock, audit });
  });
  afterEach(async () => {
    await backend.close();
  });

  /** A user who accepted an invite with password + TOTP; returns the TOTP secret. */
  async function enrolled(users: UserService, name = 'alice'): Promise<string> {
    const { token } = await users.create({ name, roles: ['access'], traits: { logins: [name] } }, 'admin');
    if (!token) throw new Error('expected an invite');
    const info = await users.inspectToken(token.token);
    const secret = info.totp?.secret ?? '';
    await users.acceptToken(token.token, { password: PASSWORD, otp: codeAt(secret, clock.now()) });
    // The enrollment code's step is used up; move to the next one.
    clock.advance(30_000);
    return secret;
  }

  describe('create / update / delete', () => {
    it('creates a user with a password and no invite when the second factor is off', async () => {
      const users = service({ secondFactor: 'off' });
      const { user, token } = await users.create(
        { name: 'bob', roles: ['access'], password: PASSWORD },
        'admin',
      );
      expect(token).toBeUndefined();
      expect(user).toMatchObject({ name: 'bob', roles: ['access'], traits: {}, createdBy: 'admin' });
      expect(user.passwordHash).toMatch(/^\$scrypt\$/);
      expect(await users.get('bob')).toEqual(user);
      expect(audit.events.map((e) => e.type)).toEqual(['user.create']);
      expect(audit.last('user.create')).toMatchObject({ user: 'admin', name: 'bob', roles: ['access'] });
    });

    it('issues an invite when there is no password, or when TOTP must be enrolled', async () => {
      const users = service();
      const a = await users.create({ name: 'a', roles: ['access'] }, 'admin');
      expect(a.token).toMatchObject({ kind: 'invite', user: 'a', expires: '2026-01-02T12:00:05.000Z' });
      expect(a.token?.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const b = await users.create({ name: 'b', roles: ['access'], password: PASSWORD }, 'admin');
      expect(b.token?.kind).toBe('invite');
      expect(audit.find('user.token.create').map((e) => e.name)).toEqual(['a', 'b']);
      // Only the token's hash is stored.
      const keys = (await backend.range('tokens/')).map((i) => i.key);
      expect(keys).toHaveLength(2);
      for (const k of keys) expect(k).toMatch(/^tokens\/[0-9a-f]{64}$/);
      expect(JSON.stringify(await backend.range('tokens/'))).not.toContain(a.token?.token);
    });

    it('rejects duplicates, bad names, unknown roles, bad traits and weak passwords', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const dup = await rejection(
        users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin'),
      );
      expect(dup.code).toBe('GH_ERR_ALREADY_EXISTS');
      expect(dup.hint).toMatch(/another name/);
      for (const name of ['Bob', '-x', '', 'a/b', 'x'.repeat(65)]) {
        expect((await rejection(users.create({ name, roles: [] }, 'admin'))).code).toBe('GH_ERR_VALIDATION');
      }
      const role = await rejection(users.create({ name: 'c', roles: ['nope'] }, 'admin'));
      expect(role.message).toBe('role "nope" does not exist');
      const traits = await rejection(
        users.create({ name: 'c', roles: [], traits: { logins: 'x' as unknown as string[] } }, 'admin'),
      );
      expect(traits.code).toBe('GH_ERR_VALIDATION');
      const weak = await rejection(users.create({ name: 'c', roles: [], password: 'short' }, 'admin'));
      expect(weak.code).toBe('GH_ERR_VALIDATION');
      expect(await users.get('c')).toBeUndefined();
    });

    it('updates roles and traits', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      clock.advance(1000);
      const u = await users.update(
        'bob',
        { roles: ['auditor', 'auditor'], traits: { logins: ['bob', 'bob'] } },
        'admin',
      );
      expect(u).toMatchObject({
        roles: ['auditor'],
        traits: { logins: ['bob'] },
        updatedAt: '2026-01-01T12:00:06.000Z',
      });
      expect(u.passwordHash).toMatch(/^\$scrypt\$/);
      expect(await users.get('bob')).toEqual(u);
      expect(audit.last('user.update')).toMatchObject({ name: 'bob', changes: ['roles', 'traits'] });
      expect((await rejection(users.update('nobody', { roles: [] }, 'admin'))).code).toBe('GH_ERR_NOT_FOUND');
      expect((await rejection(users.update('bob', { roles: ['ghost'] }, 'admin'))).code).toBe(
        'GH_ERR_VALIDATION',
      );
    });

    it('concurrent updates do not lose writes', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      await Promise.all([
        users.update('bob', { roles: ['auditor'] }, 'a'),
        users.update('bob', { traits: { logins: ['b'] } }, 'b'),
      ]);
      expect(await users.get('bob')).toMatchObject({ roles: ['auditor'], traits: { logins: ['b'] } });
    });

    it('delete removes the user and their tokens', async () => {
      const users = service();
      const { token } = await users.create({ name: 'a', roles: ['access'] }, 'admin');
      await users.create({ name: 'keep', roles: ['access'] }, 'admin');
      await users.delete('a', 'admin');
      expect(await users.get('a')).toBeUndefined();
      expect((await backend.range('tokens/')).map((i) => JSON.parse(i.value).user)).toEqual(['keep']);
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      expect(audit.last('user.delete')).toMatchObject({ user: 'admin', name: 'a' });
      expect((await rejection(users.delete('a', 'admin'))).code).toBe('GH_ERR_NOT_FOUND');
    });

    it('toView shows no secrets and reports locks', async () => {
      const users = service();
      await enrolled(users);
      const rec = (await users.get('alice')) as UserRecord;
      const lock = await locks.create({ target: { role: 'access' } }, 'admin');
      const view = users.toView(rec, await locks.list());
      expect(view).toEqual({
        name: 'alice',
        roles: ['access'],
        traits: { logins: ['alice'] },
        hasPassword: true,
        hasTotp: true,
        locked: true,
        lockedBy: [lock.id],
        createdAt: rec.createdAt,
        updatedAt: rec.updatedAt,
      });
      expect(JSON.stringify(view)).not.toMatch(/scrypt|sealed|secret/i);
      expect(users.toView(rec, []).locked).toBe(false);
    });
  });

  describe('tokens', () => {
    it('inspect offers a TOTP device; accept sets the password and enrolls it', async () => {
      const users = service();
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
        otp: codeAt(info.totp?.secret ?? '', clock.now()),
        remoteAddr: '10.0.0.9',
      });
      expect(u.passwordHash).toMatch(/^\$scrypt\$/);
      expect(u.totp?.lastCounter).toBe(Math.floor(clock.now().getTime() / 30_000));
      expect(sealer.open(u.totp?.sealedSecret ?? '', 'users/alice/totp')).toBe(info.totp?.secret);
      expect(audit.last('user.login')).toMatchObject({
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
      expect(await backend.range('tokens/')).toEqual([]);
    });

    it('a bad password or code does not consume the token', async () => {
      const users = service();
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      const t = token?.token ?? '';
      const secret = (await users.inspectToken(t)).totp?.secret ?? '';
      expect(
        (await rejection(users.acceptToken(t, { password: 'short', otp: codeAt(secret, clock.now()) }))).code,
      ).toBe('GH_ERR_VALIDATION');
      expect((await rejection(users.acceptToken(t, { password: PASSWORD }))).code).toBe(
        'GH_ERR_SECOND_FACTOR_REQUIRED',
      );
      const wrong = codeAt(secret, new Date(clock.now().getTime() + 5 * 60_000));
      expect((await rejection(users.acceptToken(t, { password: PASSWORD, otp: wrong }))).code).toBe(
        'GH_ERR_SECOND_FACTOR_INVALID',
      );
      expect(audit.find('user.login').map((e) => (e.success ? 'ok' : e.reason))).toEqual([
        'second_factor_required',
        'second_factor_invalid',
      ]);
      const u = await users.acceptToken(t, { password: PASSWORD, otp: codeAt(secret, clock.now()) });
      expect(u.totp).toBeDefined();
    });

    it('an invite expires', async () => {
      const users = service({ secondFactor: 'off', inviteTtlMs: 3_600_000 });
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      clock.advance(3_600_000 - 1);
      expect((await users.inspectToken(token?.token ?? '')).user).toBe('alice');
      clock.advance(1);
      const e = await rejection(users.acceptToken(token?.token ?? '', { password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_TOKEN_INVALID');
      expect(e.hint).toMatch(/ask an admin/);
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      expect((await users.get('alice'))?.passwordHash).toBeUndefined();
    });

    it('checks expiry itself when the backend has not expired the token yet', async () => {
      // A backend on a clock that lags behind (another node, or a sweep not run yet).
      const lagging = new MemoryBackend({ clock: new ManualClock(clock.now()), sweepIntervalMs: 0 });
      const users = new UserService({
        backend: lagging,
        sealer,
        clock,
        audit,
        clusterName: 'acme',
        locks,
        roles,
        policy: { secondFactor: 'off', inviteTtlMs: 3_600_000 },
      });
      const { token } = await users.create({ name: 'alice', roles: ['access'] }, 'admin');
      clock.advance(3_600_000);
      expect(await lagging.range('tokens/')).toHaveLength(1);
      const e = await rejection(users.acceptToken(token?.token ?? '', { password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_TOKEN_INVALID');
      expect(audit.last('user.login')).toMatchObject({
        success: false,
        reason: 'token_expired',
        method: 'invite',
      });
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      await lagging.close();
    });

    it('unknown and malformed tokens are invalid', async () => {
      const users = service();
      for (const t of ['', 'x', 'A'.repeat(43), '../../users/alice'.padEnd(43, 'a')]) {
        expect((await rejection(users.acceptToken(t, { password: PASSWORD }))).code).toBe(
          'GH_ERR_TOKEN_INVALID',
        );
      }
      expect(audit.last('user.login')).toMatchObject({ success: false, reason: 'token_invalid' });
    });

    it('two concurrent accepts of one token: exactly one wins', async () => {
      const users = service({ secondFactor: 'off' });
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
      const users = service();
      const oldSecret = await enrolled(users);
      const r1 = await users.createToken('alice', 'reset', 'admin');
      const r2 = await users.createToken('alice', 'reset', 'admin');
      expect(r2.expires).toBe(new Date(clock.now().getTime() + 3_600_000).toISOString());
      expect((await rejection(users.inspectToken(r1.token))).code).toBe('GH_ERR_TOKEN_INVALID');
      // Until accepted, the old password and device still work.
      await users.authenticate({ user: 'alice', password: PASSWORD, otp: codeAt(oldSecret, clock.now()) });
      const info = await users.inspectToken(r2.token);
      expect(info.kind).toBe('reset');
      expect(info.totp?.secret).not.toBe(oldSecret);
      clock.advance(30_000);
      await users.acceptToken(r2.token, {
        password: `${PASSWORD} new`,
        otp: codeAt(info.totp?.secret ?? '', clock.now()),
      });
      expect(audit.last('user.login')).toMatchObject({ success: true, method: 'reset' });
      clock.advance(30_000);
      expect(
        (
          await rejection(
            users.authenticate({
              user: 'alice',
              password: PASSWORD,
              otp: codeAt(info.totp?.secret ?? '', clock.now()),
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
              otp: codeAt(oldSecret, clock.now()),
            }),
          )
        ).code,
      ).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      clock.advance(30_000);
      await users.authenticate({
        user: 'alice',
        password: `${PASSWORD} new`,
        otp: codeAt(info.totp?.secret ?? '', clock.now()),
      });
    });

    it('tokens for unknown users are refused', async () => {
      expect((await rejection(service().createToken('ghost', 'reset', 'admin'))).code).toBe(
        'GH_ERR_NOT_FOUND',
      );
    });
  });

  describe('authenticate', () => {
    it('unknown user and wrong password fail identically', async () => {
      const users = service({ secondFactor: 'off' });
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
      expect(audit.find('user.login').map((e) => (e.success ? 'ok' : [e.user, e.reason]))).toEqual([
        ['nobody', 'unknown_user'],
        ['bob', 'bad_password'],
        ['pending', 'bad_password'],
      ]);
    });

    it('password-only login succeeds and is audited', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const u = await users.authenticate({ user: 'bob', password: PASSWORD, remoteAddr: '127.0.0.1' });
      expect(u.name).toBe('bob');
      expect(audit.last('user.login')).toMatchObject({
        success: true,
        method: 'password',
        mfa: false,
        user: 'bob',
        addr: { remote: '127.0.0.1' },
      });
    });

    it('backs off after repeated failures, doubling, and success resets', async () => {
      const users = service({ secondFactor: 'off' });
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
      clock.advance(59_000);
      const later = await rejection(users.authenticate({ user: 'bob', password: PASSWORD }));
      expect(later.code).toBe('GH_ERR_LOGIN_BACKOFF');
      expect(later.details).toEqual({ retry_after_s: 1 });
      clock.advance(1_000);
      // After the wait, one more failure pauses twice as long.
      expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS');
      clock.advance(119_000);
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_LOGIN_BACKOFF',
      );
      clock.advance(1_000);
      // Success resets the count: the next failure does not pause.
      await users.authenticate({ user: 'bob', password: PASSWORD });
      expect((await users.get('bob'))?.loginFailures).toBeUndefined();
      expect((await bad()).code).toBe('GH_ERR_BAD_CREDENTIALS');
      expect((await users.get('bob'))?.loginFailures).toEqual({ count: 1 });
      expect(audit.find('user.login').filter((e) => !e.success && e.reason === 'backoff')).toHaveLength(3);
    });

    it('pauses an unknown name exactly like a known one, so backoff does not reveal which names exist', async () => {
      const users = service({ secondFactor: 'off' });
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
      clock.advance(60_000);
      expect((await rejection(users.authenticate({ user: 'nobody-at-all', password: 'x' }))).code).toBe(
        'GH_ERR_BAD_CREDENTIALS',
      );
      expect(
        audit
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
      const users = service({
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
        clock.advance(200_000);
      }
      expect(waits).toEqual([60, 120, 150]);
    });

    it('requires, checks and consumes TOTP codes', async () => {
      const users = service();
      const secret = await enrolled(users);
      const missing = await rejection(users.authenticate({ user: 'alice', password: PASSWORD }));
      expect(missing.code).toBe('GH_ERR_SECOND_FACTOR_REQUIRED');
      const bad = await rejection(
        users.authenticate({
          user: 'alice',
          password: PASSWORD,
          otp: '000000' === codeAt(secret, clock.now()) ? '111111' : '000000',
        }),
      );
      expect(bad.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      expect((await users.get('alice'))?.loginFailures?.count).toBe(1);
      const code = codeAt(secret, clock.now());
      const u = await users.authenticate({ user: 'alice', password: PASSWORD, otp: code });
      expect(u.loginFailures).toBeUndefined();
      expect(u.totp?.lastCounter).toBe(Math.floor(clock.now().getTime() / 30_000));
      expect(audit.last('user.login')).toMatchObject({ success: true, mfa: true });
      clock.advance(5_000);
      const reused = await rejection(users.authenticate({ user: 'alice', password: PASSWORD, otp: code }));
      expect(reused.code).toBe('GH_ERR_SECOND_FACTOR_INVALID');
      expect(reused.details).toEqual({ reason: 'second_factor_reused' });
      expect(audit.last('user.login')).toMatchObject({ success: false, reason: 'second_factor_reused' });
      expect(
        audit
          .find('user.login')
          .filter((e) => !e.success)
          .map((e) => (e.success ? '' : e.reason)),
      ).toEqual(['second_factor_required', 'second_factor_invalid', 'second_factor_reused']);
    });

    it('concurrent logins with one TOTP code: only one succeeds', async () => {
      const users = service();
      const secret = await enrolled(users);
      const code = codeAt(secret, clock.now());
      const results = await Promise.allSettled([
        users.authenticate({ user: 'alice', password: PASSWORD, otp: code }),
        users.authenticate({ user: 'alice', password: PASSWORD, otp: code }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(failed?.reason).toMatchObject({ details: { reason: 'second_factor_reused' } });
    });

    it('a user without a device is told to ask for a reset', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const strict = service({ secondFactor: 'otp' });
      const e = await rejection(strict.authenticate({ user: 'bob', password: PASSWORD, otp: '123456' }));
      expect(e.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
      expect(e.hint).toMatch(/reset/);
      expect(audit.last('user.login')).toMatchObject({
        success: false,
        reason: 'second_factor_not_enrolled',
      });
    });

    it('refuses users targeted by an active lock, directly or through a role', async () => {
      const users = service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      const lock = await locks.create(
        { target: { user: 'bob' }, message: 'incident 7', ttlMs: 60_000 },
        'admin',
      );
      const e = await rejection(users.authenticate({ user: 'bob', password: PASSWORD }));
      expect(e.code).toBe('GH_ERR_USER_LOCKED');
      expect(e.message).toBe('your access is locked: incident 7');
      expect(e.details).toEqual({ lock_id: lock.id });
      expect(audit.last('user.login')).toMatchObject({ success: false, reason: 'user_locked' });
      clock.advance(60_000);
      await users.authenticate({ user: 'bob', password: PASSWORD });
      await locks.create({ target: { role: 'access' } }, 'admin');
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_USER_LOCKED',
      );
    });

    it('fails closed when locks cannot be checked', async () => {
      const users = new UserService({
        backend,
        sealer,
        clock,
        audit,
        clusterName: 'acme',
        roles,
        locks: {
          find: async () => {
            throw new GatehouseError('GH_ERR_BACKEND_UNAVAILABLE', 'down');
          },
        },
        policy: { secondFactor: 'off' },
      });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      expect((await rejection(users.authenticate({ user: 'bob', password: PASSWORD }))).code).toBe(
        'GH_ERR_BACKEND_UNAVAILABLE',
      );
      expect(audit.find('user.login').filter((e) => e.success)).toEqual([]);
    });
  });
});
