import { randomUUID } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import type { UserView } from '../api/types.js';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { PasswordLogin, type PasswordLoginRequest } from './login.js';
import { MfaDevices, mfaDevicesOf } from './mfa-devices.js';
import { checkPasswordPolicy, DEFAULT_MIN_PASSWORD_LENGTH, hashPassword } from './passwords.js';
import { type TokenDetails, type TokenInfo, UserTokens } from './tokens.js';
import type { LockRecord, SsoUserInfo, Traits, UserRecord } from './types.js';
import { USER_NAME_RE, UserRecords, userNotFound } from './user-records.js';
import { type RelyingParty, WebAuthnService } from './webauthn.js';

export type { TokenDetails, TokenInfo } from './tokens.js';
export { USER_NAME_RE } from './user-records.js';

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
  /**
   * The WebAuthn relying party (from the gateway's public_addr), read at
   * each use. Without it, or when it throws, security keys are unavailable.
   */
  relyingParty?: (() => RelyingParty) | undefined;
}

const MAX_TRAITS = 64;
const MAX_TRAIT_VALUES = 256;
const MAX_TRAIT_VALUE_LEN = 512;

/**
 * Users: records at `users/<name>` (create, update, delete, the API view).
 * Invite/reset tokens (`tokens`, tokens.ts) and password + TOTP login with
 * backoff (`logins`, login.ts) are parts of it that share the records; their
 * methods are also here under the names callers have always used.
 */
export class UserService {
  readonly #records: UserRecords;
  readonly #audit: AuditEmitter;
  readonly #clock: Clock;
  readonly #roles: UserServiceOptions['roles'];
  readonly policy: Readonly<UserPolicy>;
  /** One-time invite and reset tokens. */
  readonly tokens: UserTokens;
  /** Password + second factor, and passwordless, login with backoff. */
  readonly logins: PasswordLogin;
  /** Each user's second-factor devices (TOTP apps, security keys, passkeys). */
  readonly mfa: MfaDevices;
  /** Security key and passkey registration and verification. */
  readonly webauthn: WebAuthnService;

  constructor(opts: UserServiceOptions) {
    for (const k of ['backend', 'sealer', 'clock', 'audit', 'clusterName', 'locks', 'roles'] as const) {
      if (!opts[k]) throw new TypeError(`UserService: missing option "${k}"`);
    }
    this.#records = new UserRecords(opts.backend);
    this.#audit = opts.audit;
    this.#clock = opts.clock;
    this.#roles = opts.roles;
    const policy = { ...USER_POLICY_DEFAULTS };
    for (const [k, v] of Object.entries(opts.policy ?? {})) {
      if (v !== undefined) (policy as Record<string, unknown>)[k] = v;
    }
    this.policy = Object.freeze(policy);
    const shared = {
      backend: opts.backend,
      records: this.#records,
      sealer: opts.sealer,
      clock: opts.clock,
      audit: opts.audit,
      policy: this.policy,
    };
    this.tokens = new UserTokens({ ...shared, clusterName: opts.clusterName });
    this.mfa = new MfaDevices({
      ...shared,
      clusterName: opts.clusterName,
      secondFactorRequired: () => this.policy.secondFactor === 'otp',
    });
    this.webauthn = new WebAuthnService({
      backend: opts.backend,
      records: this.#records,
      clock: opts.clock,
      devices: this.mfa,
      rp:
        opts.relyingParty ??
        (() => {
          throw new GatehouseError(
            'GH_ERR_WEBAUTHN_UNAVAILABLE',
            'security keys are not set up on this gateway',
            {
              hint: 'set public_addr to the DNS name users open in the browser',
            },
          );
        }),
    });
    this.logins = new PasswordLogin({ ...shared, locks: opts.locks, webauthn: this.webauthn });
  }

  get(name: string): Promise<UserRecord | undefined> {
    return this.#records.get(name);
  }

  list(): Promise<UserRecord[]> {
    return this.#records.list();
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
      await this.#records.insert(user);
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
    const token = needsInvite ? await this.tokens.create(user.name, 'invite', actor) : undefined;
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
    const updated = await this.#records.mutate(name, (cur) => ({
      ...cur,
      ...(roles ? { roles } : {}),
      ...(traits ? { traits } : {}),
      updatedAt: this.#clock.now().toISOString(),
    }));
    await this.#audit.emit({ type: 'user.update', user: actor, name, changes });
    return updated;
  }

  async delete(name: string, actor: string): Promise<void> {
    const rec = await this.#records.get(name);
    if (!rec || !(await this.#records.remove(name))) throw userNotFound(name);
    // Its MFA devices were in the record; what is left is the passkey lookup.
    await this.webauthn.forgetUser(rec);
    await this.tokens.deleteOf(name);
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
      hasTotp: mfaDevicesOf(record).some((d) => d.kind === 'totp'),
      mfaDevices: mfaDevicesOf(record).length,
      locked: by.length > 0,
      ...(by.length > 0 ? { lockedBy: by } : {}),
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      ...(record.sso ? { sso: { connector: record.sso.connector, expires: record.sso.expires } } : {}),
    };
  }

  /**
   * The user an SSO login is for, created or rewritten with what the
   * provider's claims say now. A name that belongs to a local user or to
   * another connector (or another subject of this one) is refused: an
   * identity provider must not take over an account it did not make.
   */
  async upsertSso(req: {
    name: string;
    roles: string[];
    traits: Traits;
    sso: SsoUserInfo;
  }): Promise<UserRecord> {
    checkUserName(req.name);
    const roles = await this.#checkRoles(req.roles);
    const traits = checkTraits(req.traits);
    const now = this.#clock.now().toISOString();
    const conflict = (cur: UserRecord) =>
      !cur.sso || cur.sso.connector !== req.sso.connector || cur.sso.subject !== req.sso.subject;
    for (let attempt = 0; attempt < 4; attempt++) {
      const cur = await this.#records.get(req.name);
      if (!cur) {
        const user: UserRecord = {
          name: req.name,
          id: randomUUID(),
          roles,
          traits,
          sso: req.sso,
          createdAt: now,
          updatedAt: now,
          createdBy: `sso:${req.sso.connector}`,
        };
        try {
          await this.#records.insert(user);
          return user;
        } catch (e) {
          if (!isGatehouseError(e, 'GH_ERR_ALREADY_EXISTS')) throw e;
          continue; // created concurrently: check it like an existing one
        }
      }
      if (conflict(cur)) throw ssoUserConflict(req.name, req.sso.connector);
      return this.#records.mutate(req.name, (c) => {
        if (conflict(c)) throw ssoUserConflict(req.name, req.sso.connector);
        return { ...c, id: c.id ?? randomUUID(), roles, traits, sso: req.sso, updatedAt: now };
      });
    }
    throw new GatehouseError('GH_ERR_CONFLICT', `user "${req.name}" is being changed concurrently`, {
      hint: 'try again in a moment',
    });
  }

  /** A one-time token; any older token of the same user stops working (`tokens.create`). */
  createToken(name: string, kind: 'invite' | 'reset', actor: string): Promise<TokenInfo> {
    return this.tokens.create(name, kind, actor);
  }

  /** What an invite or reset offers (`tokens.inspect`). */
  inspectToken(token: string): Promise<TokenDetails> {
    return this.tokens.inspect(token);
  }

  /** Sets the password and enrolls the offered device with a token (`tokens.accept`). */
  acceptToken(
    token: string,
    req: { password: string; otp?: string | undefined; remoteAddr?: string | undefined },
  ): Promise<UserRecord> {
    return this.tokens.accept(token, req);
  }

  /** Password + second factor login (`logins.authenticate`). */
  authenticate(req: PasswordLoginRequest): Promise<UserRecord> {
    return this.logins.authenticate(req);
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
}

function ssoUserConflict(name: string, connector: string): GatehouseError {
  return new GatehouseError(
    'GH_ERR_SSO_USER_CONFLICT',
    `the user name "${name}" from connector ${connector} belongs to another user`,
    {
      hint: "ask an admin: the name is a local user or another connector's (change username_claim, or remove that user)",
      details: { user: name, connector },
    },
  );
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
