import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { Secret, TOTP } from 'otpauth';
import { afterEach, beforeEach } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { ManualClock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError } from '../errors.js';
import { LockService } from '../identity/locks.js';
import { type UserPolicy, UserService, type UserServiceOptions } from '../identity/users.js';
import { RoleService } from '../rbac/roles.js';

/**
 * The fixture of identity/'s unit tests (users, tokens, login): a fresh
 * memory backend, audit log, manual clock, locks and roles per test (not
 * exported from @gatehouse/core/testing: nothing outside core needs it).
 */

export const PASSWORD = 'correct horse battery staple';

/** Pass-through sealer that still checks the AAD, so a mix-up of seal contexts fails the tests. */
export const sealer: Sealer = {
  seal: (plain, aad) => JSON.stringify({ plain, aad }),
  open: (sealed, aad) => {
    const o = JSON.parse(sealed) as { plain: string; aad: string };
    if (o.aad !== aad) throw new GatehouseError('GH_ERR_INTERNAL', `sealed for ${o.aad}, opened as ${aad}`);
    return o.plain;
  },
};

export function codeAt(secret: string, at: Date): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: at.getTime() });
}

export async function rejection(p: Promise<unknown>): Promise<GatehouseError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof GatehouseError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

export interface UserFixture {
  clock: ManualClock;
  backend: MemoryBackend;
  audit: MemoryAuditLog;
  locks: LockService;
  roles: RoleService;
  /** A UserService on this test's backend; `over` swaps a dependency (a lagging backend, failing locks). */
  service(policy?: Partial<UserPolicy>, over?: Partial<UserServiceOptions>): UserService;
  /** A user who accepted an invite with password + TOTP; returns the TOTP secret. */
  enrolled(users: UserService, name?: string): Promise<string>;
}

/** Registers beforeEach/afterEach in the calling suite; the fields are fresh in every test. */
export function userFixture(): UserFixture {
  const f = {
    service(policy: Partial<UserPolicy> = {}, over: Partial<UserServiceOptions> = {}) {
      const { backend, clock, audit, locks, roles } = f;
      return new UserService({
        backend,
        sealer,
        clock,
        audit,
        clusterName: 'acme',
        locks,
        roles,
        policy,
        ...over,
      });
    },
    async enrolled(users: UserService, name = 'alice') {
      const { token } = await users.create({ name, roles: ['access'], traits: { logins: [name] } }, 'admin');
      if (!token) throw new Error('expected an invite');
      const info = await users.inspectToken(token.token);
      const secret = info.totp?.secret ?? '';
      await users.acceptToken(token.token, { password: PASSWORD, otp: codeAt(secret, f.clock.now()) });
      // The enrollment code's step is used up; move to the next one.
      f.clock.advance(30_000);
      return secret;
    },
  } as UserFixture;
  beforeEach(() => {
    f.clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 5));
    f.backend = new MemoryBackend({ clock: f.clock, sweepIntervalMs: 0 });
    f.audit = new MemoryAuditLog({ clock: () => f.clock.now() });
    f.locks = new LockService({ backend: f.backend, clock: f.clock, audit: f.audit });
    f.roles = new RoleService({ backend: f.backend, clock: f.clock, audit: f.audit });
  });
  afterEach(async () => {
    await f.backend.close();
  });
  return f;
}
