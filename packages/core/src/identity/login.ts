import { createHash, randomUUID } from 'node:crypto';
import type { AuditEmitter, LoginFailureReason, LoginMethod } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { formatDuration } from '../util/duration.js';
import { dummyVerify, verifyPassword } from './passwords.js';
import { verifyTotp } from './totp.js';
import type { LockRecord, UserRecord } from './types.js';
import { type UserRecords, userTotpAad } from './user-records.js';
import type { UserPolicy } from './users.js';

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
): Promise<void> {
  await audit.record({
    type: 'user.login',
    success: false,
    method,
    reason,
    error: err.message,
    ...(user !== undefined ? { user } : {}),
    ...(addr ? { addr: { remote: addr } } : {}),
  });
}

/** Password (+ TOTP) login with backoff after failures, over the user records. */
export interface PasswordLoginRequest {
  user: string;
  password: string;
  otp?: string | undefined;
  remoteAddr?: string | undefined;
}

export class PasswordLogin {
  readonly #d: PasswordLoginOptions;

  constructor(opts: PasswordLoginOptions) {
    this.#d = opts;
  }

  /**
   * Password (+ TOTP) login. Unknown users and wrong passwords fail the same
   * way and take the same time; failures pause further logins with backoff.
   */
  async authenticate(req: PasswordLoginRequest): Promise<UserRecord> {
    try {
      return await this.#authenticate(req);
    } catch (e) {
      // The backend could not answer (a shared database down): the login is refused, and on the
      // record like any refusal (the audit log spools it until its index is back).
      if (isGatehouseError(e, 'GH_ERR_BACKEND_UNAVAILABLE')) {
        const user = typeof req.user === 'string' ? req.user.slice(0, 256) : undefined;
        await this.#failed(user || undefined, 'backend_unavailable', e, req.remoteAddr);
      }
      throw e;
    }
  }

  async #authenticate(req: PasswordLoginRequest): Promise<UserRecord> {
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
    const lockedUntil = backoffUntil(rec.loginFailures);
    if (lockedUntil > now.getTime()) {
      const err = backoffError(lockedUntil - now.getTime());
      await this.#failed(name, 'backoff', err, addr);
      throw err;
    }
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

    let counter: number | undefined;
    if (this.#d.policy.secondFactor === 'otp') {
      if (!rec.totp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
          'no authenticator device is enrolled for this user',
          {
            hint: 'ask an admin for a reset link (gatehouse users reset <name>) to enroll one',
          },
        );
        await this.#failed(name, 'second_factor_not_enrolled', err, addr);
        throw err;
      }
      if (!req.otp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_REQUIRED',
          'a code from your authenticator app is required',
          {
            hint: 'enter the 6-digit code your authenticator app shows',
          },
        );
        await this.#failed(name, 'second_factor_required', err, addr);
        throw err;
      }
      const secret = this.#d.sealer.open(rec.totp.sealedSecret, userTotpAad(name));
      const r = verifyTotp(secret, req.otp, rec.totp.lastCounter, now);
      if (!r.ok) {
        const err = await this.#otpFailed(name, r.reason, addr);
        await this.#countFailure(name);
        throw err;
      }
      counter = r.counter;
    }

    let user = rec;
    // A record from before user ids gets one at its next login, so the certificates it is issued carry it.
    if (counter !== undefined || rec.loginFailures || !rec.id) {
      const c = counter;
      try {
        user = await this.#d.records.mutate(name, (cur) => {
          if (c !== undefined && (!cur.totp || cur.totp.lastCounter >= c)) throw new ReusedCode();
          return {
            ...cur,
            id: cur.id ?? randomUUID(),
            loginFailures: undefined,
            ...(c !== undefined && cur.totp ? { totp: { ...cur.totp, lastCounter: c } } : {}),
          };
        });
      } catch (e) {
        // A concurrent login used the same code first.
        if (e instanceof ReusedCode) throw await this.#otpFailed(name, 'reused', addr);
        throw e;
      }
    }

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
      await this.#failed(name, 'user_locked', err, addr);
      throw err;
    }
    await this.#d.audit.emit({
      type: 'user.login',
      success: true,
      method: 'password',
      mfa: counter !== undefined,
      user: name,
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
    await this.#failed(
      name,
      reason === 'reused' ? 'second_factor_reused' : 'second_factor_invalid',
      err,
      addr,
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
