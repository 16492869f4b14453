import { createHash, randomUUID } from 'node:crypto';
import type { AuditEmitter, LoginFailureReason, LoginMethod, MfaDeviceRef } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { formatDuration } from '../util/duration.js';
import { deviceRef, matchTotp, mfaDevicesOf, updateDevice } from './mfa-devices.js';
import { dummyVerify, verifyPassword } from './passwords.js';
import type { LockRecord, MfaDeviceRecord, UserRecord } from './types.js';
import type { UserRecords } from './user-records.js';
import type { UserPolicy } from './users.js';
import {
  type AuthenticationResponseJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  WebAuthnRefusal,
  type WebAuthnService,
} from './webauthn.js';

export interface PasswordLoginOptions {
  /** Failed logins for names no user has are counted here (login_failures/unknown/). */
  backend: Backend;
  records: UserRecords;
  sealer: Sealer;
  clock: Clock;
  audit: AuditEmitter;
  /** Active locks for a user; a lookup error propagates so logins fail closed. */
  locks: { find(who: { user: string; roles: readonly string[] }): Promise<LockRecord[]> };
  policy: Readonly<Pick<UserPolicy, 'secondFactor' | 'maxLoginAttempts' | 'lockoutBaseMs' | 'lockoutMaxMs'>>;
  /** Security keys and passkeys. */
  webauthn: WebAuthnService;
}

/** What a login presents: a password, and a second factor (a TOTP code or a WebAuthn assertion). */
export interface PasswordLoginRequest {
  user: string;
  password: string;
  otp?: string | undefined;
  /** The browser's answer to beginWebAuthn's options. */
  webauthn?: AuthenticationResponseJSON | undefined;
  remoteAddr?: string | undefined;
}

type LoginFailures = NonNullable<UserRecord['loginFailures']>;

/** Failed logins for names that are no user's, by SHA-256 of the name. */
const UNKNOWN_FAILURES = 'login_failures/unknown/';
/** How long an unknown name's count outlives its longest pause. */
const UNKNOWN_FAILURES_IDLE_MS = 24 * 3600 * 1000;

function nameKey(name: string): string {
  return createHash('sha256').update(name, 'utf8').digest('hex');
}

/** When a pause after failed logins ends (0 when there is none). */
function backoffUntil(f: LoginFailures | undefined): number {
  const t = f?.lockedUntil ? Date.parse(f.lockedUntil) : Number.NaN;
  return Number.isFinite(t) ? t : 0;
}

function backoffError(waitMs: number): GatehouseError {
  return new GatehouseError('GH_ERR_LOGIN_BACKOFF', 'too many failed login attempts', {
    hint: `wait ${formatDuration(Math.ceil(waitMs / 1000) * 1000)} and try again, or ask an admin to reset your password`,
    details: { retry_after_s: Math.ceil(waitMs / 1000) },
  });
}

const badCredentials = () =>
  new GatehouseError('GH_ERR_BAD_CREDENTIALS', 'invalid user name or password', {
    hint: 'check your user name and password; after repeated failures, logins pause for a while',
  });

class ReusedCode extends Error {}

/**
 * A failed login (password, invite or reset) as the audit log keeps it: what
 * already happened is kept even while the disk is full, and is never a
 * reason to fail differently.
 */
export async function auditLoginFailure(
  audit: AuditEmitter,
  user: string | undefined,
  method: LoginMethod,
  reason: LoginFailureReason,
  err: GatehouseError,
  addr?: string | undefined,
  device?: MfaDeviceRef | undefined,
): Promise<void> {
  await audit.record({
    type: 'user.login',
    success: false,
    method,
    reason,
    error: err.message,
    ...(user !== undefined ? { user } : {}),
    ...(addr ? { addr: { remote: addr } } : {}),
    ...(device ? { mfa_device: device } : {}),
  });
}

/** Password + second factor, and passwordless (passkey) login, with backoff after failures, over the user records. */
export class PasswordLogin {
  readonly #d: PasswordLoginOptions;

  constructor(opts: PasswordLoginOptions) {
    this.#d = opts;
  }

  /**
   * Password + second factor login. Unknown users and wrong passwords fail
   * the same way and take the same time; failures pause further logins with
   * backoff. The second factor is a code from any of the user's TOTP
   * devices, or an assertion from one of their security keys.
   */
  async authenticate(req: PasswordLoginRequest): Promise<UserRecord> {
    return this.#onRecord(req.user, 'password', req.remoteAddr, () => this.#authenticate(req));
  }

  /**
   * Runs one login step; when the backend cannot answer (a shared database
   * down) the refusal is on the record like any other (the audit log spools it
   * until its index is back), and the login fails closed.
   */
  async #onRecord<T>(
    user: string | undefined,
    method: LoginMethod,
    addr: string | undefined,
    step: () => Promise<T>,
  ): Promise<T> {
    try {
      return await step();
    } catch (e) {
      if (isGatehouseError(e, 'GH_ERR_BACKEND_UNAVAILABLE')) {
        const name = typeof user === 'string' ? user.slice(0, 256) : undefined;
        await auditLoginFailure(this.#d.audit, name || undefined, method, 'backend_unavailable', e, addr);
      }
      throw e;
    }
  }

  async #authenticate(req: PasswordLoginRequest): Promise<UserRecord> {
    const name = req.user;
    const addr = req.remoteAddr;
    const rec = await this.#checkPassword(req);
    const now = this.#d.clock.now();

    let used: { device: MfaDeviceRecord; counter?: number | undefined } | undefined;
    if (this.#d.policy.secondFactor === 'otp') {
      if (mfaDevicesOf(rec).length === 0) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
          'no second-factor device is enrolled for this user',
          {
            hint: 'ask an admin for a reset link (gatehouse users reset <name>) to enroll one',
          },
        );
        await this.#failed(name, 'second_factor_not_enrolled', err, addr);
        throw err;
      }
      if (req.webauthn !== undefined) {
        const r = await this.#webauthn(req.webauthn, name, 'password', addr);
        return this.#succeed(r.user, 'password', r.device, addr);
      }
      if (!req.otp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_REQUIRED',
          'a code from your authenticator app or a security key is required',
          {
            hint: 'enter the 6-digit code your authenticator app shows, or use your security key',
          },
        );
        await this.#failed(name, 'second_factor_required', err, addr);
        throw err;
      }
      const r = matchTotp(rec, req.otp, now, this.#d.sealer);
      if (!r.ok) {
        const err = await this.#otpFailed(name, r.reason, addr, r.device);
        await this.#countFailure(name);
        throw err;
      }
      used = { device: r.device, counter: r.counter };
    }

    let user = rec;
    // A record from before user ids gets one at its next login, so the certificates it is issued carry it.
    if (used !== undefined || rec.loginFailures || !rec.id) {
      const u = used;
      const at = now.toISOString();
      try {
        user = await this.#d.records.mutate(name, (cur) => {
          let next: UserRecord = { ...cur, id: cur.id ?? randomUUID(), loginFailures: undefined };
          if (u?.counter !== undefined) {
            const c = u.counter;
            const d = mfaDevicesOf(cur).find((x) => x.id === u.device.id);
            if (d?.kind !== 'totp' || d.lastCounter >= c) throw new ReusedCode();
            next = updateDevice(next, d.id, (x) => ({ ...x, lastCounter: c, lastUsedAt: at }) as typeof d);
          }
          return next;
        });
      } catch (e) {
        // A concurrent login used the same code first.
        if (e instanceof ReusedCode) throw await this.#otpFailed(name, 'reused', addr, used?.device);
        throw e;
      }
    }
    return this.#succeed(user, 'password', used?.device, addr);
  }

  /**
   * The first step of a password + security key login: the password is
   * checked (counted like any login) before the user's keys are named in a
   * challenge, so the login form does not tell anyone which keys a user has.
   */
  async beginWebAuthn(req: {
    user: string;
    password: string;
    remoteAddr?: string | undefined;
  }): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const rec = await this.#checkPassword(req);
    return this.#d.webauthn.beginAssertion({ user: rec.name });
  }

  /**
   * Passwordless login: a passkey's assertion (user verification required)
   * names the user through its user handle. Refusals are audited like a
   * failed login of that user, and count towards their backoff.
   */
  async authenticatePasswordless(req: {
    webauthn: AuthenticationResponseJSON;
    remoteAddr?: string | undefined;
  }): Promise<UserRecord> {
    return this.#onRecord(undefined, 'passwordless', req.remoteAddr, async () => {
      const r = await this.#webauthn(req.webauthn, undefined, 'passwordless', req.remoteAddr);
      return this.#succeed(r.user, 'passwordless', r.device, req.remoteAddr);
    });
  }

  /** Verifies a WebAuthn assertion; a refusal is audited (and counted against a known user). */
  async #webauthn(
    response: AuthenticationResponseJSON,
    user: string | undefined,
    method: LoginMethod,
    addr: string | undefined,
  ): Promise<{ user: UserRecord; device: MfaDeviceRecord }> {
    if (user === undefined) {
      // Passwordless: the user is known only from the credential; a paused user stays paused.
      const owner = await this.#d.webauthn.ownerOf(response);
      if (owner) await this.#checkBackoff(owner, method, addr);
    }
    try {
      const r = await this.#d.webauthn.finishAssertion(response, { user });
      if (r.user.loginFailures || !r.user.id) {
        return {
          user: await this.#d.records.mutate(r.user.name, (cur) => ({
            ...cur,
            id: cur.id ?? randomUUID(),
            loginFailures: undefined,
          })),
          device: r.device,
        };
      }
      return r;
    } catch (e) {
      if (!(e instanceof WebAuthnRefusal)) throw e;
      await auditLoginFailure(this.#d.audit, e.user ?? user, method, e.reason, e, addr, e.device);
      if (e.user) await this.#countFailure(e.user);
      throw e;
    }
  }

  /** The user whose password `req` has right, after the backoff check; failures are audited and counted. */
  async #checkPassword(req: {
    user: string;
    password: string;
    remoteAddr?: string | undefined;
  }): Promise<UserRecord> {
    const name = req.user;
    const addr = req.remoteAddr;
    const now = this.#d.clock.now();
    const rec = typeof name === 'string' ? await this.#d.records.get(name) : undefined;
    if (!rec) {
      // A name nobody has gets the same answers as one somebody has: the
      // same error, the same time, and the same backoff after repeated
      // failures (kept apart from user records, expiring by itself), so the
      // login form does not tell an attacker which names exist.
      const unknownName = typeof name === 'string' ? name.slice(0, 256) : '';
      const state = await this.#unknownFailures(unknownName);
      if (backoffUntil(state) > now.getTime()) {
        const err = backoffError(backoffUntil(state) - now.getTime());
        await this.#failed(unknownName || undefined, 'backoff', err, addr);
        throw err;
      }
      await dummyVerify(req.password);
      const err = badCredentials();
      await this.#failed(unknownName || undefined, 'unknown_user', err, addr);
      await this.#countUnknownFailure(unknownName, state);
      throw err;
    }
    await this.#checkBackoff(rec, 'password', addr);
    const ok = rec.passwordHash
      ? await verifyPassword(req.password, rec.passwordHash)
      : await dummyVerify(req.password);
    if (!ok) {
      const err = badCredentials();
      // Recorded first: a backend that cannot count the failure (full disk) must not hide it.
      await this.#failed(name, 'bad_password', err, addr);
      await this.#countFailure(name);
      throw err;
    }
    return rec;
  }

  async #checkBackoff(rec: UserRecord, method: LoginMethod, addr: string | undefined): Promise<void> {
    const now = this.#d.clock.now().getTime();
    const lockedUntil = backoffUntil(rec.loginFailures);
    if (lockedUntil > now) {
      const err = backoffError(lockedUntil - now);
      await auditLoginFailure(this.#d.audit, rec.name, method, 'backoff', err, addr);
      throw err;
    }
  }

  /** The lock check and the success event every login method ends with. */
  async #succeed(
    user: UserRecord,
    method: LoginMethod,
    device: MfaDeviceRecord | undefined,
    addr: string | undefined,
  ): Promise<UserRecord> {
    const name = user.name;
    const locks = await this.#d.locks.find({ user: name, roles: user.roles });
    const lock = locks[0];
    if (lock) {
      const err = new GatehouseError(
        'GH_ERR_USER_LOCKED',
        `your access is locked${lock.message ? `: ${lock.message}` : ''}`,
        {
          hint: 'ask an admin to remove the lock (gatehouse locks ls, gatehouse locks rm <id>)',
          details: { lock_id: lock.id },
        },
      );
      await auditLoginFailure(this.#d.audit, name, method, 'user_locked', err, addr);
      throw err;
    }
    await this.#d.audit.emit({
      type: 'user.login',
      success: true,
      method,
      mfa: device !== undefined,
      user: name,
      ...(device ? { mfa_device: deviceRef(device) } : {}),
      ...(addr ? { addr: { remote: addr } } : {}),
    });
    return user;
  }

  #failed(
    user: string | undefined,
    reason: LoginFailureReason,
    err: GatehouseError,
    addr: string | undefined,
  ): Promise<void> {
    return auditLoginFailure(this.#d.audit, user, 'password', reason, err, addr);
  }

  async #otpFailed(
    name: string,
    reason: 'invalid' | 'reused',
    addr: string | undefined,
    device?: MfaDeviceRecord | undefined,
  ): Promise<GatehouseError> {
    const err = new GatehouseError(
      'GH_ERR_SECOND_FACTOR_INVALID',
      reason === 'reused'
        ? 'this authenticator code was already used'
        : 'the authenticator code is not valid',
      {
        hint:
          reason === 'reused'
            ? 'wait for your authenticator app to show a new code and try again'
            : "check that your phone's clock is right and enter the current code",
        details: { reason: reason === 'reused' ? 'second_factor_reused' : 'second_factor_invalid' },
      },
    );
    await auditLoginFailure(
      this.#d.audit,
      name,
      'password',
      reason === 'reused' ? 'second_factor_reused' : 'second_factor_invalid',
      err,
      addr,
      device ? deviceRef(device) : undefined,
    );
    return err;
  }

  async #countFailure(name: string): Promise<void> {
    try {
      await this.#d.records.mutate(name, (cur) => ({
        ...cur,
        loginFailures: this.#nextFailures(cur.loginFailures),
      }));
    } catch (e) {
      // Deleted while logging in: there is nothing left to count against.
      if (!isGatehouseError(e, 'GH_ERR_NOT_FOUND')) throw e;
    }
  }

  /** One more failure: the count, and from maxLoginAttempts on a pause that doubles up to the cap. */
  #nextFailures(cur: LoginFailures | undefined): LoginFailures {
    const p = this.#d.policy;
    const now = this.#d.clock.now().getTime();
    const count = (cur?.count ?? 0) + 1;
    const over = count - p.maxLoginAttempts;
    // 2 ** over overflows to Infinity long before it matters; the cap bounds it.
    const pause = over >= 0 ? Math.min(p.lockoutBaseMs * 2 ** over, p.lockoutMaxMs) : 0;
    return { count, ...(pause > 0 ? { lockedUntil: new Date(now + pause).toISOString() } : {}) };
  }

  /** Failures against a name no user has (keyed by its hash: any string may be typed). */
  async #unknownFailures(name: string): Promise<LoginFailures | undefined> {
    const item = await this.#d.backend.get(UNKNOWN_FAILURES + nameKey(name));
    if (!item) return undefined;
    const v = JSON.parse(item.value) as LoginFailures;
    return typeof v?.count === 'number' ? v : undefined;
  }

  async #countUnknownFailure(name: string, cur: LoginFailures | undefined): Promise<void> {
    // Forgotten once no pause could still run (an idle count does not linger forever either).
    const ttlMs = this.#d.policy.lockoutMaxMs + UNKNOWN_FAILURES_IDLE_MS;
    await this.#d.backend.put(UNKNOWN_FAILURES + nameKey(name), JSON.stringify(this.#nextFailures(cur)), {
      ttlMs,
    });
  }
}
