import { describe, expect, it } from 'vitest';
import { PASSWORD, rejection, userFixture } from '../testing/users.js';
import type { UserRecord } from './types.js';

describe('UserService', () => {
  const f = userFixture();

  describe('create / update / delete', () => {
    it('creates a user with a password and no invite when the second factor is off', async () => {
      const users = f.service({ secondFactor: 'off' });
      const { user, token } = await users.create(
        { name: 'bob', roles: ['access'], password: PASSWORD },
        'admin',
      );
      expect(token).toBeUndefined();
      expect(user).toMatchObject({ name: 'bob', roles: ['access'], traits: {}, createdBy: 'admin' });
      expect(user.passwordHash).toMatch(/^\$scrypt\$/);
      expect(await users.get('bob')).toEqual(user);
      expect(f.audit.events.map((e) => e.type)).toEqual(['user.create']);
      expect(f.audit.last('user.create')).toMatchObject({ user: 'admin', name: 'bob', roles: ['access'] });
    });

    it('issues an invite when there is no password, or when TOTP must be enrolled', async () => {
      const users = f.service();
      const a = await users.create({ name: 'a', roles: ['access'] }, 'admin');
      expect(a.token).toMatchObject({ kind: 'invite', user: 'a', expires: '2026-01-02T12:00:05.000Z' });
      expect(a.token?.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const b = await users.create({ name: 'b', roles: ['access'], password: PASSWORD }, 'admin');
      expect(b.token?.kind).toBe('invite');
      expect(f.audit.find('user.token.create').map((e) => e.name)).toEqual(['a', 'b']);
      // Only the token's hash is stored.
      const keys = (await f.backend.range('tokens/')).map((i) => i.key);
      expect(keys).toHaveLength(2);
      for (const k of keys) expect(k).toMatch(/^tokens\/[0-9a-f]{64}$/);
      expect(JSON.stringify(await f.backend.range('tokens/'))).not.toContain(a.token?.token);
    });

    it('rejects duplicates, bad names, unknown roles, bad traits and weak passwords', async () => {
      const users = f.service({ secondFactor: 'off' });
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
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      f.clock.advance(1000);
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
      expect(f.audit.last('user.update')).toMatchObject({ name: 'bob', changes: ['roles', 'traits'] });
      expect((await rejection(users.update('nobody', { roles: [] }, 'admin'))).code).toBe('GH_ERR_NOT_FOUND');
      expect((await rejection(users.update('bob', { roles: ['ghost'] }, 'admin'))).code).toBe(
        'GH_ERR_VALIDATION',
      );
    });

    it('concurrent updates do not lose writes', async () => {
      const users = f.service({ secondFactor: 'off' });
      await users.create({ name: 'bob', roles: ['access'], password: PASSWORD }, 'admin');
      await Promise.all([
        users.update('bob', { roles: ['auditor'] }, 'a'),
        users.update('bob', { traits: { logins: ['b'] } }, 'b'),
      ]);
      expect(await users.get('bob')).toMatchObject({ roles: ['auditor'], traits: { logins: ['b'] } });
    });

    it('delete removes the user and their tokens', async () => {
      const users = f.service();
      const { token } = await users.create({ name: 'a', roles: ['access'] }, 'admin');
      await users.create({ name: 'keep', roles: ['access'] }, 'admin');
      await users.delete('a', 'admin');
      expect(await users.get('a')).toBeUndefined();
      expect((await f.backend.range('tokens/')).map((i) => JSON.parse(i.value).user)).toEqual(['keep']);
      expect((await rejection(users.inspectToken(token?.token ?? ''))).code).toBe('GH_ERR_TOKEN_INVALID');
      expect(f.audit.last('user.delete')).toMatchObject({ user: 'admin', name: 'a' });
      expect((await rejection(users.delete('a', 'admin'))).code).toBe('GH_ERR_NOT_FOUND');
    });

    it('toView shows no secrets and reports locks', async () => {
      const users = f.service();
      await f.enrolled(users);
      const rec = (await users.get('alice')) as UserRecord;
      const lock = await f.locks.create({ target: { role: 'access' } }, 'admin');
      const view = users.toView(rec, await f.locks.list());
      expect(view).toEqual({
        name: 'alice',
        roles: ['access'],
        traits: { logins: ['alice'] },
        hasPassword: true,
        hasTotp: true,
        mfaDevices: 1,
        locked: true,
        lockedBy: [lock.id],
        createdAt: rec.createdAt,
        updatedAt: rec.updatedAt,
      });
      expect(JSON.stringify(view)).not.toMatch(/scrypt|sealed|secret/i);
      expect(users.toView(rec, []).locked).toBe(false);
    });
  });
});
