import { createHash, randomUUID } from 'node:crypto';
import type { AuditEmitter, LoginFailureReason, LoginMethod } from '@gatehouse/audit';
import type { UserView } from '../api/types.js';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { commandLineToken } from '../crypto/token.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { formatDuration } from '../util/duration.js';
import {
  checkPasswordPolicy,
  DEFAULT_MIN_PASSWORD_LENGTH,
  dummyVerify,
  hashPassword,
  verifyPassword,
} from './passwords.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';
import type { LockRecord, Traits, UserRecord, UserTokenRecord } from './types.js';

export interface UserPolicy {
  /** 'otp': password + TOTP code; 'off': password only. */
  secondFactor: 'otp' | 'off';
  /** Failed logins before the first pause. */
  maxLoginAttempts: number;
  /** First pause; each further failure doubles it. */
  lockoutBaseMs: number;
  /** Longest pause. */
  lockoutMaxMs: number;
  inviteTtlMs: number;
  resetTtlMs: number;
  minPasswordLength: number;
}

export const USER_POLICY_DEFAULTS: UserPolicy = Object.freeze({
  secondFactor: 'otp',
  maxLoginAttempts: 5,
  lockoutBaseMs: 60_000,
  lockoutMaxMs: 30 * 60_000,
  inviteTtlMs: 24 * 3_600_000,
  resetTtlMs: 3_600_000,
  minPasswordLength: DEFAULT_MIN_PASSWORD_LENGTH,
});

export interface UserServiceOptions {
  backend: Backend;
  sealer: Sealer;
  clock: Clock;
  audit: AuditEmitter;
  clusterName: string;
  /** Active locks for a user; a lookup error propagates so logins fail closed. */
  locks: { find(who: { user: string; roles: readonly string[] }): Promise<LockRecord[]> };
  /** Role existence check (a RoleService fits). */
  roles: { exists(name: string): Promise<boolean> };
  policy?: Partial<UserPolicy> | undefined;
}

export interface TokenInfo {
  /** The secret itself: shown once, never stored (only its SHA-256 is). */
  token: string;
  kind: 'invite' | 'reset';
  user: string;
  expires: string;
}

export interface TokenDetails {
  user: string;
  kind: 'invite' | 'reset';
  expires: string;
  /** Offered TOTP device (second factor otp): the secret for manual entry and the otpauth:// URI for a QR code. */
  totp?: { secret: string; uri: string } | undefined;
}

export const USER_NAME_RE = /^[a-z0-9][a-z0-9._@-]{0,63}$/;
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const USERS = 'users/';
const TOKENS = 'tokens/';
const MAX_TRAITS = 64;
const MAX_TRAIT_VALUES = 256;
const MAX_TRAIT_VALUE_LEN = 512;

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

const tokenInvalid = (cause?: unknown) =>
  new GatehouseError(
    'GH_ERR_TOKEN_INVALID',
    'this invite or reset link is invalid, expired or already used',
    {
      hint: 'ask an admin for a new one (gatehouse users reset <name>)',
      ...(cause ? { cause } : {}),
    },
  );

/** Private marker for a token that exists but is expired (audited as token_expired). */
class ExpiredToken extends Error {}

/**
 * Users, one-time invite/reset tokens and password (+ TOTP) login with
 * lockout. Records live at `users/<name>`, tokens at `tokens/<sha256>`.
 * Every read-modify-write goes through compare-and-swap, so concurrent
 * logins cannot lose a failure count or replay a TOTP code.
 */
export class UserService {
  readonly #backend: Backend;
  readonly #sealer: Sealer;
  readonly #clock: Clock;
  readonly #audit: AuditEmitter;
  readonly #cluster: string;
  readonly #locks: UserServiceOptions['locks'];
  readonly #roles: UserServiceOptions['roles'];
  readonly policy: Readonly<UserPolicy>;

  constructor(opts: UserServiceOptions) {
    for (const k of ['backend', 'sealer', 'clock', 'audit', 'clusterName', 'locks', 'roles'] as const) {
      if (!opts[k]) throw new TypeError(`UserService: missing option "${k}"`);
    }
    this.#backend = opts.backend;
    this.#sealer = opts.sealer;
    this.#clock = opts.clock;
    this.#audit = opts.audit;
    this.#cluster = opts.clusterName;
    this.#locks = opts.locks;
    this.#roles = opts.roles;
    const policy = { ...USER_POLICY_DEFAULTS };
    for (const [k, v] of Object.entries(opts.policy ?? {})) {
      if (v !== undefined) (policy as Record<string, unknown>)[k] = v;
    }
    this.policy = Object.freeze(policy);
  }

  // ---- records -------------------------------------------------------------

  async get(name: string): Promise<UserRecord | undefined> {
    if (typeof name !== 'string' || !USER_NAME_RE.test(name)) return undefined;
    const item = await this.#backend.get(USERS + name);
    return item ? decodeUser(name, item.value) : undefined;
  }

  async list(): Promise<UserRecord[]> {
    const items = await this.#backend.range(USERS);
    return items.map((i) => decodeUser(i.key.slice(USERS.length), i.value));
  }

  async create(
    req: { name: string; roles: string[]; traits?: Traits | undefined; password?: string | undefined },
    actor: string,
  ): Promise<{ user: UserRecord; token?: TokenInfo | undefined }> {
    checkUserName(req.name);
    const roles = await this.#checkRoles(req.roles);
    const traits = checkTraits(req.traits ?? {});
    let passwordHash: string | undefined;
    if (req.password !== undefined) {
      checkPasswordPolicy(req.password, this.policy.minPasswordLength);
      passwordHash = await hashPassword(req.password);
    }
    const now = this.#clock.now().toISOString();
    const user: UserRecord = {
      name: req.name,
      id: randomUUID(),
      roles,
      traits,
      ...(passwordHash ? { passwordHash } : {}),
      createdAt: now,
      updatedAt: now,
      createdBy: actor,
    };
    try {
      await this.#backend.create(USERS + user.name, JSON.stringify(user));
    } catch (e) {
      if (isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) {
        throw new GatehouseError('GH_ERR_ALREADY_EXISTS', `user "${user.name}" already exists`, {
          hint: 'pick another name, or change the existing user with `gatehouse users update`',
          cause: e,
          details: { user: user.name },
        });
      }
      throw e;
    }
    await this.#audit.emit({ type: 'user.create', user: actor, name: user.name, roles: user.roles });
    // Without a password, or without the TOTP device the policy requires, the user finishes setup via an invite.
    const needsInvite = !passwordHash || this.policy.secondFactor === 'otp';
    const token = needsInvite ? await this.createToken(user.name, 'invite', actor) : undefined;
    return { user, token };
  }

  async update(
    name: string,
    req: { roles?: string[] | undefined; traits?: Traits | undefined },
    actor: string,
  ): Promise<UserRecord> {
    const roles = req.roles === undefined ? undefined : await this.#checkRoles(req.roles);
    const traits = req.traits === undefined ? undefined : checkTraits(req.traits);
    const changes = [...(roles ? ['roles'] : []), ...(traits ? ['traits'] : [])];
    const updated = await this.#mutate(name, (cur) => ({
      ...cur,
      ...(roles ? { roles } : {}),
      ...(traits ? { traits } : {}),
      updatedAt: this.#clock.now().toISOString(),
    }));
    await this.#audit.emit({ type: 'user.update', user: actor, name, changes });
    return updated;
  }

  async delete(name: string, actor: string): Promise<void> {
    const deleted = USER_NAME_RE.test(name) && (await this.#backend.delete(USERS + name));
    if (!deleted) throw notFound(name);
    await this.#deleteTokensOf(name);
    await this.#audit.emit({ type: 'user.delete', user: actor, name });
  }

  /** The API's view of a user: never the password hash or TOTP secret. */
  toView(record: UserRecord, locks: readonly LockRecord[]): UserView {
    const by = locks
      .filter((l) =>
        'user' in l.target ? l.target.user === record.name : record.roles.includes(l.target.role),
      )
      .map((l) => l.id);
    return {
      name: record.name,
      roles: [...record.roles],
      traits: structuredClone(record.traits),
      hasPassword: Boolean(record.passwordHash),
      hasTotp: Boolean(record.totp),
      locked: by.length > 0,
      ...(by.length > 0 ? { lockedBy: by } : {}),
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
    };
  }

  // ---- tokens --------------------------------------------------------------

  /** A one-time token; any older token of the same user stops working. */
  async createToken(name: string, kind: 'invite' | 'reset', actor: string): Promise<TokenInfo> {
    if (!(await this.get(name))) throw notFound(name);
    await this.#deleteTokensOf(name);
    const token = commandLineToken(32);
    const id = tokenId(token);
    const ttlMs = kind === 'invite' ? this.policy.inviteTtlMs : this.policy.resetTtlMs;
    const now = this.#clock.now();
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    const record: UserTokenRecord = {
      kind,
      user: name,
      expires,
      ...(this.policy.secondFactor === 'otp'
        ? { sealedTotpSecret: this.#sealer.seal(newTotpSecret(), tokenAad(id)) }
        : {}),
      createdAt: now.toISOString(),
    };
    await this.#backend.create(TOKENS + id, JSON.stringify(record), { ttlMs });
    await this.#audit.emit({ type: 'user.token.create', user: actor, name, kind, expires });
    return { token, kind, user: name, expires };
  }

  async inspectToken(token: string): Promise<TokenDetails> {
    const { id, record } = await this.#loadToken(token).catch((e: unknown) => {
      throw e instanceof ExpiredToken ? tokenInvalid() : e;
    });
    const secret = record.sealedTotpSecret
      ? this.#sealer.open(record.sealedTotpSecret, tokenAad(id))
      : undefined;
    return {
      user: record.user,
      kind: record.kind,
      expires: record.expires,
      ...(secret ? { totp: { secret, uri: totpUri(record.user, this.#cluster, secret) } } : {}),
    };
  }

  /**
   * Set the password (and enroll the offered TOTP device) with a one-time
   * token. The token is consumed with compare-and-swap, so of two concurrent
   * accepts exactly one succeeds.
   */
  async acceptToken(
    token: string,
    req: { password: string; otp?: string | undefined; remoteAddr?: string | undefined },
  ): Promise<UserRecord> {
    const addr = req.remoteAddr;
    let loaded: LoadedToken;
    try {
      loaded = await this.#loadToken(token);
    } catch (e) {
      if (e instanceof ExpiredToken || isGatehouseError(e, 'GH_ERR_TOKEN_INVALID')) {
        const err = tokenInvalid();
        await this.#loginFailed(
          undefined,
          'invite',
          e instanceof ExpiredToken ? 'token_expired' : 'token_invalid',
          err,
          addr,
        );
        throw err;
      }
      throw e;
    }
    const { id, item, record } = loaded;
    const method: LoginMethod = record.kind;
    checkPasswordPolicy(req.password, this.policy.minPasswordLength);

    const now = this.#clock.now();
    let device: UserRecord['totp'];
    if (this.policy.secondFactor === 'otp') {
      if (!record.sealedTotpSecret) {
        // Created while second factor was off: it cannot enroll the device the policy now requires.
        const err = tokenInvalid();
        await this.#loginFailed(record.user, method, 'token_invalid', err, addr);
        throw err;
      }
      const secret = this.#sealer.open(record.sealedTotpSecret, tokenAad(id));
      if (!req.otp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_REQUIRED',
          'a code from your authenticator app is required',
          {
            hint: 'add the TOTP secret to your authenticator app (scan the QR code), then enter the 6-digit code it shows',
          },
        );
        await this.#loginFailed(record.user, method, 'second_factor_required', err, addr);
        throw err;
      }
      const r = verifyTotp(secret, req.otp, -1, now);
      if (!r.ok) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_INVALID',
          'the authenticator code is not valid',
          {
            hint: "check that your phone's clock is right and enter the current code",
          },
        );
        await this.#loginFailed(record.user, method, 'second_factor_invalid', err, addr);
        throw err;
      }
      device = {
        sealedSecret: this.#sealer.seal(secret, userTotpAad(record.user)),
        lastCounter: r.counter,
        addedAt: now.toISOString(),
      };
    }
    const passwordHash = await hashPassword(req.password);

    // Consume: only the accept whose CAS lands wins; the loser sees a conflict.
    const remaining = Date.parse(record.expires) - this.#clock.now().getTime();
    try {
      if (remaining <= 0) throw new ExpiredToken();
      await this.#backend.compareAndSwap(
        TOKENS + id,
        item.revision,
        JSON.stringify({ ...record, consumedAt: now.toISOString() } satisfies UserTokenRecord),
        { ttlMs: remaining },
      );
    } catch (e) {
      if (
        e instanceof ExpiredToken ||
        isGatehouseError(e, 'GH_ERR_CONFLICT') ||
        isGatehouseError(e, 'GH_ERR_NOT_FOUND')
      ) {
        const err = tokenInvalid(e);
        await this.#loginFailed(
          record.user,
          method,
          e instanceof ExpiredToken ? 'token_expired' : 'token_invalid',
          err,
          addr,
        );
        throw err;
      }
      throw e;
    }
    await this.#backend.delete(TOKENS + id);

    let updated: UserRecord;
    try {
      updated = await this.#mutate(record.user, (cur) => ({
        ...cur,
        passwordHash,
        // A reset replaces the old device too: that is what "lost my phone" needs.
        totp: device,
        loginFailures: undefined,
        updatedAt: now.toISOString(),
      }));
    } catch (e) {
      if (isGatehouseError(e, 'GH_ERR_NOT_FOUND')) {
        const err = tokenInvalid(e);
        await this.#loginFailed(record.user, method, 'token_invalid', err, addr);
        throw err;
      }
      throw e;
    }
    await this.#audit.emit({
      type: 'user.login',
      success: true,
      method,
      mfa: device !== undefined,
      user: record.user,
      ...(addr ? { addr: { remote: addr } } : {}),
    });
    return updated;
  }

  // ---- login ---------------------------------------------------------------

  /**
   * Password (+ TOTP) login. Unknown users and wrong passwords fail the same
   * way and take the same time; failures pause further logins with backoff.
   */
  async authenticate(req: {
    user: string;
    password: string;
    otp?: string | undefined;
    remoteAddr?: string | undefined;
  }): Promise<UserRecord> {
    const name = req.user;
    const addr = req.remoteAddr;
    const now = this.#clock.now();
    const rec = typeof name === 'string' ? await this.get(name) : undefined;
    if (!rec) {
      // A name nobody has gets the same answers as one somebody has: the
      // same error, the same time, and the same backoff after repeated
      // failures (kept apart from user records, expiring by itself), so the
      // login form does not tell an attacker which names exist.
      const unknownName = typeof name === 'string' ? name.slice(0, 256) : '';
      const state = await this.#unknownFailures(unknownName);
      if (backoffUntil(state) > now.getTime()) {
        const err = backoffError(backoffUntil(state) - now.getTime());
        await this.#loginFailed(unknownName || undefined, 'password', 'backoff', err, addr);
        throw err;
      }
      await dummyVerify(req.password);
      const err = badCredentials();
      await this.#loginFailed(unknownName || undefined, 'password', 'unknown_user', err, addr);
      await this.#countUnknownFailure(unknownName, state);
      throw err;
    }
    const lockedUntil = backoffUntil(rec.loginFailures);
    if (lockedUntil > now.getTime()) {
      const err = backoffError(lockedUntil - now.getTime());
      await this.#loginFailed(name, 'password', 'backoff', err, addr);
      throw err;
    }
    const ok = rec.passwordHash
      ? await verifyPassword(req.password, rec.passwordHash)
      : await dummyVerify(req.password);
    if (!ok) {
      const err = badCredentials();
      // Recorded first: a backend that cannot count the failure (full disk) must not hide it.
      await this.#loginFailed(name, 'password', 'bad_password', err, addr);
      await this.#countFailure(name);
      throw err;
    }

    let counter: number | undefined;
    if (this.policy.secondFactor === 'otp') {
      if (!rec.totp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_NOT_ENROLLED',
          'no authenticator device is enrolled for this user',
          {
            hint: 'ask an admin for a reset link (gatehouse users reset <name>) to enroll one',
          },
        );
        await this.#loginFailed(name, 'password', 'second_factor_not_enrolled', err, addr);
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
        await this.#loginFailed(name, 'password', 'second_factor_required', err, addr);
        throw err;
      }
      const secret = this.#sealer.open(rec.totp.sealedSecret, userTotpAad(name));
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
        user = await this.#mutate(name, (cur) => {
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

    const locks = await this.#locks.find({ user: name, roles: user.roles });
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
      await this.#loginFailed(name, 'password', 'user_locked', err, addr);
      throw err;
    }
    await this.#audit.emit({
      type: 'user.login',
      success: true,
      method: 'password',
      mfa: counter !== undefined,
      user: name,
      ...(addr ? { addr: { remote: addr } } : {}),
    });
    return user;
  }

  // ---- internals -----------------------------------------------------------

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
    await this.#loginFailed(
      name,
      'password',
      reason === 'reused' ? 'second_factor_reused' : 'second_factor_invalid',
      err,
      addr,
    );
    return err;
  }

  async #loginFailed(
    user: string | undefined,
    method: LoginMethod,
    reason: LoginFailureReason,
    err: GatehouseError,
    addr?: string | undefined,
  ): Promise<void> {
    // What already happened: kept even while the disk is full, and never a reason to fail differently.
    await this.#audit.record({
      type: 'user.login',
      success: false,
      method,
      reason,
      error: err.message,
      ...(user !== undefined ? { user } : {}),
      ...(addr ? { addr: { remote: addr } } : {}),
    });
  }

  async #countFailure(name: string): Promise<void> {
    try {
      await this.#mutate(name, (cur) => ({ ...cur, loginFailures: this.#nextFailures(cur.loginFailures) }));
    } catch (e) {
      // Deleted while logging in: there is nothing left to count against.
      if (!isGatehouseError(e, 'GH_ERR_NOT_FOUND')) throw e;
    }
  }

  /** One more failure: the count, and from maxLoginAttempts on a pause that doubles up to the cap. */
  #nextFailures(cur: LoginFailures | undefined): LoginFailures {
    const p = this.policy;
    const now = this.#clock.now().getTime();
    const count = (cur?.count ?? 0) + 1;
    const over = count - p.maxLoginAttempts;
    // 2 ** over overflows to Infinity long before it matters; the cap bounds it.
    const pause = over >= 0 ? Math.min(p.lockoutBaseMs * 2 ** over, p.lockoutMaxMs) : 0;
    return { count, ...(pause > 0 ? { lockedUntil: new Date(now + pause).toISOString() } : {}) };
  }

  /** Failures against a name no user has (keyed by its hash: any string may be typed). */
  async #unknownFailures(name: string): Promise<LoginFailures | undefined> {
    const item = await this.#backend.get(UNKNOWN_FAILURES + nameKey(name));
    if (!item) return undefined;
    const v = JSON.parse(item.value) as LoginFailures;
    return typeof v?.count === 'number' ? v : undefined;
  }

  async #countUnknownFailure(name: string, cur: LoginFailures | undefined): Promise<void> {
    // Forgotten once no pause could still run (an idle count does not linger forever either).
    const ttlMs = this.policy.lockoutMaxMs + UNKNOWN_FAILURES_IDLE_MS;
    await this.#backend.put(UNKNOWN_FAILURES + nameKey(name), JSON.stringify(this.#nextFailures(cur)), {
      ttlMs,
    });
  }

  async #checkRoles(roles: unknown): Promise<string[]> {
    if (!Array.isArray(roles) || roles.some((r) => typeof r !== 'string')) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'roles must be a list of role names', {
        hint: 'pass roles like ["access"]',
      });
    }
    const unique = [...new Set(roles as string[])];
    for (const r of unique) {
      if (!(await this.#roles.exists(r))) {
        throw new GatehouseError('GH_ERR_VALIDATION', `role "${r}" does not exist`, {
          hint: 'create the role first (gatehouse roles put FILE) or pick one from `gatehouse roles ls`',
          details: { role: r },
        });
      }
    }
    return unique;
  }

  async #mutate(name: string, fn: (cur: UserRecord) => UserRecord): Promise<UserRecord> {
    if (!USER_NAME_RE.test(name)) throw notFound(name);
    for (let attempt = 0; attempt < 32; attempt++) {
      const item = await this.#backend.get(USERS + name);
      if (!item) throw notFound(name);
      const next = fn(decodeUser(name, item.value));
      try {
        await this.#backend.compareAndSwap(USERS + name, item.revision, JSON.stringify(next));
        return next;
      } catch (e) {
        if (!isGatehouseError(e, 'GH_ERR_CONFLICT')) throw e;
      }
    }
    throw new GatehouseError('GH_ERR_CONFLICT', `user "${name}" is being changed concurrently`, {
      hint: 'try again in a moment',
    });
  }

  async #loadToken(token: string): Promise<LoadedToken> {
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) throw tokenInvalid();
    const id = tokenId(token);
    const item = await this.#backend.get(TOKENS + id);
    if (!item) throw tokenInvalid();
    let record: UserTokenRecord;
    try {
      record = JSON.parse(item.value) as UserTokenRecord;
    } catch (e) {
      throw tokenInvalid(e);
    }
    if (record.consumedAt) throw tokenInvalid();
    // The backend TTL may lag (or run on another clock): check expiry here too.
    if (!(Date.parse(record.expires) > this.#clock.now().getTime())) throw new ExpiredToken();
    return { id, item, record };
  }

  async #deleteTokensOf(name: string): Promise<void> {
    for (const item of await this.#backend.range(TOKENS)) {
      let owner: string | undefined;
      try {
        owner = (JSON.parse(item.value) as UserTokenRecord).user;
      } catch {
        // Unreadable token records cannot be accepted either (acceptToken rejects them); skip.
        continue;
      }
      if (owner === name) await this.#backend.delete(item.key);
    }
  }
}

class ReusedCode extends Error {}

interface LoadedToken {
  id: string;
  item: { revision: number };
  record: UserTokenRecord;
}

function tokenId(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function tokenAad(id: string): string {
  return `tokens/${id}/totp`;
}

function userTotpAad(name: string): string {
  return `users/${name}/totp`;
}

function notFound(name: string): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `user "${name}" not found`, {
    hint: 'list users with `gatehouse users ls`',
    details: { user: name },
  });
}

function checkUserName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !USER_NAME_RE.test(name)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `invalid user name ${JSON.stringify(name)}`, {
      hint: 'use 1-64 lowercase letters, digits, ".", "_", "@" or "-", starting with a letter or digit',
    });
  }
}

function checkTraits(traits: unknown): Traits {
  const bad = (why: string) =>
    new GatehouseError('GH_ERR_VALIDATION', `invalid traits: ${why}`, {
      hint: 'traits map names to lists of strings, e.g. { "logins": ["alice", "ubuntu"] }',
    });
  if (typeof traits !== 'object' || traits === null || Array.isArray(traits)) throw bad('not a mapping');
  const entries = Object.entries(traits);
  if (entries.length > MAX_TRAITS) throw bad(`more than ${MAX_TRAITS} traits`);
  const out: Traits = {};
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9_.:/-]{1,128}$/.test(k)) throw bad(`trait name ${JSON.stringify(k)}`);
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x.length > MAX_TRAIT_VALUE_LEN)) {
      throw bad(`trait "${k}" must be a list of strings of at most ${MAX_TRAIT_VALUE_LEN} characters`);
    }
    if (v.length > MAX_TRAIT_VALUES) throw bad(`trait "${k}" has more than ${MAX_TRAIT_VALUES} values`);
    Object.defineProperty(out, k, {
      value: [...new Set(v as string[])],
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function decodeUser(name: string, value: string): UserRecord {
  try {
    const rec = JSON.parse(value) as UserRecord;
    if (rec.name !== name || !Array.isArray(rec.roles)) throw new Error('record does not match its key');
    return rec;
  } catch (e) {
    throw new GatehouseError('GH_ERR_INTERNAL', `stored user "${name}" is unreadable`, {
      hint: `repair or delete users/${name} in the backend, then re-create the user`,
      cause: e,
    });
  }
}
