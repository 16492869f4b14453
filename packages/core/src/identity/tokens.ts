import { createHash } from 'node:crypto';
import type { AuditEmitter, LoginMethod } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { commandLineToken } from '../crypto/token.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { auditLoginFailure } from './login.js';
import { checkPasswordPolicy, hashPassword } from './passwords.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';
import type { MfaDeviceRecord, UserRecord, UserTokenRecord } from './types.js';
import { type UserRecords, userNotFound, userTotpAad } from './user-records.js';
import type { UserPolicy } from './users.js';

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

export interface UserTokensOptions {
  backend: Backend;
  records: UserRecords;
  sealer: Sealer;
  clock: Clock;
  audit: AuditEmitter;
  /** Issuer shown in the authenticator app (the otpauth:// URI). */
  clusterName: string;
  policy: Readonly<Pick<UserPolicy, 'secondFactor' | 'inviteTtlMs' | 'resetTtlMs' | 'minPasswordLength'>>;
}

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;
const TOKENS = 'tokens/';

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

/**
 * One-time invite and reset tokens, stored at `tokens/<sha256>`: accepting
 * one sets the user's password and enrolls the TOTP device it offers.
 */
export class UserTokens {
  readonly #d: UserTokensOptions;

  constructor(opts: UserTokensOptions) {
    this.#d = opts;
  }

  /** A one-time token; any older token of the same user stops working. */
  async create(name: string, kind: 'invite' | 'reset', actor: string): Promise<TokenInfo> {
    const d = this.#d;
    if (!(await d.records.get(name))) throw userNotFound(name);
    await this.deleteOf(name);
    const token = commandLineToken(32);
    const id = tokenId(token);
    const ttlMs = kind === 'invite' ? d.policy.inviteTtlMs : d.policy.resetTtlMs;
    const now = d.clock.now();
    const expires = new Date(now.getTime() + ttlMs).toISOString();
    const record: UserTokenRecord = {
      kind,
      user: name,
      expires,
      ...(d.policy.secondFactor === 'otp'
        ? { sealedTotpSecret: d.sealer.seal(newTotpSecret(), tokenAad(id)) }
        : {}),
      createdAt: now.toISOString(),
    };
    await d.backend.create(TOKENS + id, JSON.stringify(record), { ttlMs });
    await d.audit.emit({ type: 'user.token.create', user: actor, name, kind, expires });
    return { token, kind, user: name, expires };
  }

  async inspect(token: string): Promise<TokenDetails> {
    const { id, record } = await this.#load(token).catch((e: unknown) => {
      throw e instanceof ExpiredToken ? tokenInvalid() : e;
    });
    const secret = record.sealedTotpSecret
      ? this.#d.sealer.open(record.sealedTotpSecret, tokenAad(id))
      : undefined;
    return {
      user: record.user,
      kind: record.kind,
      expires: record.expires,
      ...(secret ? { totp: { secret, uri: totpUri(record.user, this.#d.clusterName, secret) } } : {}),
    };
  }

  /**
   * Set the password (and enroll the offered TOTP device) with a one-time
   * token. The token is consumed with compare-and-swap, so of two concurrent
   * accepts exactly one succeeds.
   */
  async accept(
    token: string,
    req: { password: string; otp?: string | undefined; remoteAddr?: string | undefined },
  ): Promise<UserRecord> {
    const d = this.#d;
    const addr = req.remoteAddr;
    const failed = (
      user: string | undefined,
      method: LoginMethod,
      reason: Parameters<typeof auditLoginFailure>[3],
      err: GatehouseError,
    ) => auditLoginFailure(d.audit, user, method, reason, err, addr);
    let loaded: LoadedToken;
    try {
      loaded = await this.#load(token);
    } catch (e) {
      if (e instanceof ExpiredToken || isGatehouseError(e, 'GH_ERR_TOKEN_INVALID')) {
        const err = tokenInvalid();
        await failed(undefined, 'invite', e instanceof ExpiredToken ? 'token_expired' : 'token_invalid', err);
        throw err;
      }
      throw e;
    }
    const { id, item, record } = loaded;
    const method: LoginMethod = record.kind;
    checkPasswordPolicy(req.password, d.policy.minPasswordLength);

    const now = d.clock.now();
    let device: UserRecord['totp'];
    if (d.policy.secondFactor === 'otp') {
      if (!record.sealedTotpSecret) {
        // Created while second factor was off: it cannot enroll the device the policy now requires.
        const err = tokenInvalid();
        await failed(record.user, method, 'token_invalid', err);
        throw err;
      }
      const secret = d.sealer.open(record.sealedTotpSecret, tokenAad(id));
      if (!req.otp) {
        const err = new GatehouseError(
          'GH_ERR_SECOND_FACTOR_REQUIRED',
          'a code from your authenticator app is required',
          {
            hint: 'add the TOTP secret to your authenticator app (scan the QR code), then enter the 6-digit code it shows',
          },
        );
        await failed(record.user, method, 'second_factor_required', err);
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
        await failed(record.user, method, 'second_factor_invalid', err);
        throw err;
      }
      device = {
        sealedSecret: d.sealer.seal(secret, userTotpAad(record.user)),
        lastCounter: r.counter,
        addedAt: now.toISOString(),
      };
    }
    const passwordHash = await hashPassword(req.password);

    // Consume: only the accept whose CAS lands wins; the loser sees a conflict.
    const remaining = Date.parse(record.expires) - d.clock.now().getTime();
    try {
      if (remaining <= 0) throw new ExpiredToken();
      await d.backend.compareAndSwap(
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
        await failed(record.user, method, e instanceof ExpiredToken ? 'token_expired' : 'token_invalid', err);
        throw err;
      }
      throw e;
    }
    await d.backend.delete(TOKENS + id);

    let updated: UserRecord;
    let dropped: MfaDeviceRecord[] = [];
    try {
      updated = await d.records.mutate(record.user, (cur) => {
        dropped = cur.mfaDevices ?? [];
        return {
          ...cur,
          passwordHash,
          // A reset replaces the old device too: that is what "lost my phone" needs. Keys and
          // passkeys go as well: a lost passkey alone would still sign in.
          totp: device,
          mfaDevices: undefined,
          loginFailures: undefined,
          updatedAt: now.toISOString(),
        };
      });
    } catch (e) {
      if (isGatehouseError(e, 'GH_ERR_NOT_FOUND')) {
        const err = tokenInvalid(e);
        await failed(record.user, method, 'token_invalid', err);
        throw err;
      }
      throw e;
    }
    for (const x of dropped) {
      await d.audit.emit({
        type: 'mfa.remove',
        success: true,
        user: record.user,
        name: record.user,
        mfa_device: { method: x.kind, name: x.name, id: x.id },
        message: `removed by a ${record.kind} link`,
        ...(addr ? { addr: { remote: addr } } : {}),
      });
    }
    await d.audit.emit({
      type: 'user.login',
      success: true,
      method,
      mfa: device !== undefined,
      user: record.user,
      ...(addr ? { addr: { remote: addr } } : {}),
    });
    return updated;
  }

  /** The kind and expiry of `name`'s token that can still be accepted, if any. */
  async pendingOf(name: string): Promise<{ kind: 'invite' | 'reset'; expires: string } | undefined> {
    const now = this.#d.clock.now().getTime();
    for (const item of await this.#d.backend.range(TOKENS)) {
      let r: UserTokenRecord;
      try {
        r = JSON.parse(item.value) as UserTokenRecord;
      } catch {
        // Unreadable token records cannot be accepted (accept rejects them): not pending.
        continue;
      }
      if (r.user === name && !r.consumedAt && Date.parse(r.expires) > now) {
        return { kind: r.kind, expires: r.expires };
      }
    }
    return undefined;
  }

  /** Every token of `name` stops working (a new token, or the user is deleted). */
  async deleteOf(name: string): Promise<void> {
    for (const item of await this.#d.backend.range(TOKENS)) {
      let owner: string | undefined;
      try {
        owner = (JSON.parse(item.value) as UserTokenRecord).user;
      } catch {
        // Unreadable token records cannot be accepted either (accept rejects them); skip.
        continue;
      }
      if (owner === name) await this.#d.backend.delete(item.key);
    }
  }

  async #load(token: string): Promise<LoadedToken> {
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) throw tokenInvalid();
    const id = tokenId(token);
    const item = await this.#d.backend.get(TOKENS + id);
    if (!item) throw tokenInvalid();
    let record: UserTokenRecord;
    try {
      record = JSON.parse(item.value) as UserTokenRecord;
    } catch (e) {
      throw tokenInvalid(e);
    }
    if (record.consumedAt) throw tokenInvalid();
    // The backend TTL may lag (or run on another clock): check expiry here too.
    if (!(Date.parse(record.expires) > this.#d.clock.now().getTime())) throw new ExpiredToken();
    return { id, item, record };
  }
}
