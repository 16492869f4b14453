import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { AuditEmitter, MfaChangeRefusal, MfaDeviceRef } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { GatehouseError } from '../errors.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';
import type { MfaDeviceRecord, TotpDeviceRecord, UserRecord, WebAuthnDeviceRecord } from './types.js';
import { type UserRecords, userTotpAad } from './user-records.js';

/**
 * A user's second-factor devices: TOTP apps and WebAuthn credentials
 * (security keys, passkeys), several of each, each named. The device an
 * invite enrolled stays in the record's `totp` field and is listed as id
 * `totp`; the others live in `mfaDevices`. Stored in the user record, so a
 * device change and a login's counter update are one compare-and-swap, and
 * deleting the user deletes them.
 */

/** The id the invite-enrolled TOTP device is listed under. */
export const ENROLLED_TOTP_ID = 'totp';
const ENROLLED_TOTP_NAME = 'authenticator app';
/** Devices per user: enough for a few keys, phones and a backup; bounds the record and a login's work. */
export const MAX_MFA_DEVICES = 16;
/** How long a TOTP secret offered by `mfa add` waits for its first code. */
const PENDING_TOTP_TTL_MS = 10 * 60_000;
const PENDING_TOTP = 'mfa_pending_totp/';

/** What the API shows of a device: never its secret or key. */
export interface MfaDeviceView {
  id: string;
  name: string;
  kind: 'totp' | 'webauthn';
  added_at: string;
  last_used_at?: string | undefined;
  /** WebAuthn: registered as a passkey (discoverable, user verification): signs in without a password. */
  passkey?: boolean | undefined;
}

/** Every device of `rec`, the invite-enrolled TOTP device first. */
export function mfaDevicesOf(rec: UserRecord): MfaDeviceRecord[] {
  const out: MfaDeviceRecord[] = [];
  if (rec.totp) {
    out.push({
      kind: 'totp',
      id: ENROLLED_TOTP_ID,
      name: rec.totp.name ?? ENROLLED_TOTP_NAME,
      sealedSecret: rec.totp.sealedSecret,
      lastCounter: rec.totp.lastCounter,
      addedAt: rec.totp.addedAt,
      ...(rec.totp.lastUsedAt ? { lastUsedAt: rec.totp.lastUsedAt } : {}),
    });
  }
  out.push(...(rec.mfaDevices ?? []));
  return out;
}

export function webAuthnDevicesOf(rec: UserRecord): WebAuthnDeviceRecord[] {
  return (rec.mfaDevices ?? []).filter((d): d is WebAuthnDeviceRecord => d.kind === 'webauthn');
}

export function deviceRef(d: MfaDeviceRecord): MfaDeviceRef {
  return { method: d.kind, name: d.name, id: d.id };
}

export function deviceView(d: MfaDeviceRecord): MfaDeviceView {
  return {
    id: d.id,
    name: d.name,
    kind: d.kind,
    added_at: d.addedAt,
    ...(d.lastUsedAt ? { last_used_at: d.lastUsedAt } : {}),
    ...(d.kind === 'webauthn' ? { passkey: d.passkey } : {}),
  };
}

/** The sealing context of a TOTP device's secret. */
export function totpDeviceAad(user: string, id: string): string {
  return id === ENROLLED_TOTP_ID ? userTotpAad(user) : `users/${user}/mfa/${id}`;
}

/** `rec` with device `id` replaced by `fn(device)` (wherever it is stored). */
export function updateDevice(
  rec: UserRecord,
  id: string,
  fn: (d: MfaDeviceRecord) => MfaDeviceRecord,
): UserRecord {
  if (id === ENROLLED_TOTP_ID && rec.totp) {
    const d = fn(mfaDevicesOf(rec)[0]!);
    if (d.kind !== 'totp') throw new TypeError('the enrolled TOTP device stays a TOTP device');
    return {
      ...rec,
      totp: {
        ...rec.totp,
        lastCounter: d.lastCounter,
        ...(d.lastUsedAt ? { lastUsedAt: d.lastUsedAt } : {}),
      },
    };
  }
  return { ...rec, mfaDevices: (rec.mfaDevices ?? []).map((d) => (d.id === id ? fn(d) : d)) };
}

export type TotpMatch =
  | { ok: true; device: TotpDeviceRecord; counter: number }
  | { ok: false; reason: 'invalid' | 'reused'; device?: TotpDeviceRecord | undefined };

/**
 * The TOTP device `code` is from. Every TOTP device is tried: a code that is
 * valid but already used on one device counts as reused only if no other
 * device takes it.
 */
export function matchTotp(rec: UserRecord, code: string, now: Date, sealer: Sealer): TotpMatch {
  let reused: TotpDeviceRecord | undefined;
  for (const d of mfaDevicesOf(rec)) {
    if (d.kind !== 'totp') continue;
    const secret = sealer.open(d.sealedSecret, totpDeviceAad(rec.name, d.id));
    const r = verifyTotp(secret, code, d.lastCounter, now);
    if (r.ok) return { ok: true, device: d, counter: r.counter };
    if (r.reason === 'reused') reused = d;
  }
  return reused ? { ok: false, reason: 'reused', device: reused } : { ok: false, reason: 'invalid' };
}

export function checkDeviceName(name: unknown): string {
  const n = typeof name === 'string' ? name.trim() : '';
  // Printable, no control characters: it is shown in tables, the UI and audit events.
  if (n.length < 1 || n.length > 64 || /[\p{Cc}\p{Cf}]/u.test(n)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `invalid device name ${JSON.stringify(name)}`, {
      hint: 'name the device with 1-64 printable characters, e.g. "yubikey blue"',
    });
  }
  return n;
}

export interface MfaDevicesOptions {
  backend: Backend;
  records: UserRecords;
  sealer: Sealer;
  clock: Clock;
  audit: AuditEmitter;
  clusterName: string;
  /** Whether the cluster requires a second factor at login (then the last device cannot be removed). */
  secondFactorRequired: () => boolean;
}

/** Who asks for a device change, for the audit event. */
export interface MfaActor {
  /** The acting user (the owner, or an admin). */
  actor: string;
  remoteAddr?: string | undefined;
}

/** Listing, adding (TOTP here, WebAuthn through WebAuthnService) and removing a user's devices. */
export class MfaDevices {
  readonly #d: MfaDevicesOptions;

  constructor(opts: MfaDevicesOptions) {
    this.#d = opts;
  }

  /** The user's record (what the API checks before a change: SSO users have no devices here). */
  record(user: string): Promise<UserRecord | undefined> {
    return this.#d.records.get(user);
  }

  async list(user: string): Promise<MfaDeviceView[]> {
    const rec = await this.#d.records.get(user);
    if (!rec) throw userMissing(user);
    return mfaDevicesOf(rec).map(deviceView);
  }

  /**
   * A new TOTP secret for `user` to scan; it becomes a device once a code
   * from it is confirmed (finishTotp) within 10 minutes.
   */
  async beginTotp(user: string): Promise<{ pending_id: string; secret: string; uri: string }> {
    const rec = await this.#d.records.get(user);
    if (!rec) throw userMissing(user);
    const secret = newTotpSecret();
    const pendingId = randomBytes(24).toString('base64url');
    const expires = this.#d.clock.now().getTime() + PENDING_TOTP_TTL_MS;
    await this.#d.backend.put(
      PENDING_TOTP + sha256(pendingId),
      JSON.stringify({
        user,
        sealedSecret: this.#d.sealer.seal(secret, pendingAad(user)),
        expires: new Date(expires).toISOString(),
      }),
      { ttlMs: PENDING_TOTP_TTL_MS },
    );
    return { pending_id: pendingId, secret, uri: totpUri(user, this.#d.clusterName, secret) };
  }

  /** Adds the TOTP device begun with `pendingId` once `code` shows the app has the secret. */
  async finishTotp(
    user: string,
    req: { pending_id: string; name: string; code: string },
    by: MfaActor,
  ): Promise<MfaDeviceView> {
    const name = await this.#checked(user, () => checkDeviceName(req.name), req.name, by);
    const key = PENDING_TOTP + sha256(String(req.pending_id));
    const item = await this.#d.backend.get(key);
    const pending = item
      ? (JSON.parse(item.value) as { user: string; sealedSecret: string; expires: string })
      : undefined;
    if (!pending || pending.user !== user || Date.parse(pending.expires) <= this.#d.clock.now().getTime()) {
      throw await this.refuseAdd(
        user,
        name,
        'challenge_invalid',
        new GatehouseError('GH_ERR_TOKEN_INVALID', 'this TOTP setup is unknown or has expired', {
          hint: 'start adding the device again (gatehouse mfa add --type totp)',
        }),
        by,
      );
    }
    const secret = this.#d.sealer.open(pending.sealedSecret, pendingAad(user));
    const r = verifyTotp(secret, req.code, 0, this.#d.clock.now());
    if (!r.ok) {
      throw await this.refuseAdd(
        user,
        name,
        'invalid',
        new GatehouseError('GH_ERR_SECOND_FACTOR_INVALID', 'the authenticator code is not valid', {
          hint: "scan the QR code (or type the secret) into your app, check the phone's clock, and enter the code it shows",
        }),
        by,
      );
    }
    const id = randomUUID();
    const device: TotpDeviceRecord = {
      kind: 'totp',
      id,
      name,
      sealedSecret: this.#d.sealer.seal(secret, totpDeviceAad(user, id)),
      lastCounter: r.counter,
      addedAt: this.#d.clock.now().toISOString(),
    };
    const added = await this.add(user, device, by);
    // Used once: the same setup cannot add a second device.
    await this.#d.backend.delete(key);
    return added;
  }

  /**
   * Stores `device` for `user` (name unique, at most MAX_MFA_DEVICES) and
   * audits mfa.add. WebAuthnService calls it after verifying a registration.
   */
  async add(user: string, device: MfaDeviceRecord, by: MfaActor): Promise<MfaDeviceView> {
    let refusal: { reason: MfaChangeRefusal; err: GatehouseError } | undefined;
    try {
      await this.#d.records.mutate(user, (cur) => {
        refusal = undefined;
        const all = mfaDevicesOf(cur);
        if (cur.sso) {
          // A passkey would sign an SSO user in without their identity provider.
          refusal = {
            reason: 'invalid',
            err: new GatehouseError(
              'GH_ERR_VALIDATION',
              'single sign-on users have no Gatehouse MFA devices',
              {
                hint: `the second factor is the identity provider's (connector ${cur.sso.connector})`,
              },
            ),
          };
        } else if (all.some((d) => d.name.toLowerCase() === device.name.toLowerCase())) {
          refusal = {
            reason: 'duplicate',
            err: new GatehouseError('GH_ERR_ALREADY_EXISTS', `a device named "${device.name}" exists`, {
              hint: 'pick another name (gatehouse mfa ls lists yours)',
            }),
          };
        } else if (
          device.kind === 'webauthn' &&
          all.some((d) => d.kind === 'webauthn' && d.credentialId === device.credentialId)
        ) {
          refusal = {
            reason: 'duplicate',
            err: new GatehouseError('GH_ERR_ALREADY_EXISTS', 'this security key is already registered', {
              hint: 'it is in your device list already; use another key',
            }),
          };
        } else if (all.length >= MAX_MFA_DEVICES) {
          refusal = {
            reason: 'limit',
            err: new GatehouseError('GH_ERR_VALIDATION', `at most ${MAX_MFA_DEVICES} devices per user`, {
              hint: 'remove a device you no longer use first',
            }),
          };
        }
        if (refusal) throw refusal.err;
        return {
          ...cur,
          id: cur.id ?? randomUUID(),
          mfaDevices: [...(cur.mfaDevices ?? []), device],
          updatedAt: this.#d.clock.now().toISOString(),
        };
      });
    } catch (e) {
      if (refusal) throw await this.refuseAdd(user, device.name, refusal.reason, refusal.err, by);
      throw e;
    }
    await this.#d.audit.emit({
      type: 'mfa.add',
      success: true,
      user: by.actor,
      name: user,
      mfa_device: deviceRef(device),
      ...(by.remoteAddr ? { addr: { remote: by.remoteAddr } } : {}),
    });
    return deviceView(device);
  }

  /**
   * Removes device `id` (or the one named `id`). The last one is refused
   * while the cluster requires a second factor: the user could not log in.
   */
  async remove(user: string, id: string, by: MfaActor): Promise<MfaDeviceView> {
    let refusal: { reason: MfaChangeRefusal; err: GatehouseError; device?: MfaDeviceRecord } | undefined;
    let removed: MfaDeviceRecord | undefined;
    try {
      await this.#d.records.mutate(user, (cur) => {
        refusal = undefined;
        const all = mfaDevicesOf(cur);
        const d = all.find((x) => x.id === id) ?? all.find((x) => x.name === id);
        if (!d) {
          refusal = {
            reason: 'not_found',
            err: new GatehouseError('GH_ERR_NOT_FOUND', `no device "${id}"`, {
              hint: 'list your devices with gatehouse mfa ls',
              details: { device: id },
            }),
          };
          throw refusal.err;
        }
        if (all.length === 1 && this.#d.secondFactorRequired()) {
          refusal = {
            reason: 'last_factor',
            device: d,
            err: new GatehouseError(
              'GH_ERR_MFA_LAST_FACTOR',
              `"${d.name}" is your last second-factor device and this cluster requires one`,
              {
                hint: 'add another device first (gatehouse mfa add, or the account page), then remove this one',
                details: { device: d.id },
              },
            ),
          };
          throw refusal.err;
        }
        removed = d;
        const next: UserRecord = { ...cur, updatedAt: this.#d.clock.now().toISOString() };
        if (d.id === ENROLLED_TOTP_ID) next.totp = undefined;
        else next.mfaDevices = (cur.mfaDevices ?? []).filter((x) => x.id !== d.id);
        return next;
      });
    } catch (e) {
      if (refusal) {
        await this.#d.audit.record({
          type: 'mfa.remove',
          success: false,
          user: by.actor,
          name: user,
          reason: refusal.reason,
          error: refusal.err.message,
          ...(refusal.device ? { mfa_device: deviceRef(refusal.device) } : {}),
          ...(by.remoteAddr ? { addr: { remote: by.remoteAddr } } : {}),
        });
        throw refusal.err;
      }
      throw e;
    }
    const d = removed!;
    await this.#d.audit.emit({
      type: 'mfa.remove',
      success: true,
      user: by.actor,
      name: user,
      mfa_device: deviceRef(d),
      ...(by.remoteAddr ? { addr: { remote: by.remoteAddr } } : {}),
    });
    return deviceView(d);
  }

  /** Runs `check`, auditing a refused mfa.add when it throws. */
  async #checked<T>(user: string, check: () => T, name: unknown, by: MfaActor): Promise<T> {
    try {
      return check();
    } catch (e) {
      if (e instanceof GatehouseError) {
        throw await this.refuseAdd(user, typeof name === 'string' ? name.slice(0, 64) : '', 'invalid', e, by);
      }
      throw e;
    }
  }

  /** Audits a refused mfa.add (here, and WebAuthnService for a registration) and returns `err` to throw. */
  async refuseAdd(
    user: string,
    deviceName: string,
    reason: MfaChangeRefusal,
    err: GatehouseError,
    by: MfaActor,
  ): Promise<GatehouseError> {
    await this.#d.audit.record({
      type: 'mfa.add',
      success: false,
      user: by.actor,
      name: user,
      reason,
      error: err.message,
      ...(deviceName ? { device_name: deviceName } : {}),
      ...(by.remoteAddr ? { addr: { remote: by.remoteAddr } } : {}),
    });
    return err;
  }
}

function pendingAad(user: string): string {
  return `users/${user}/mfa/pending`;
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function userMissing(user: string): GatehouseError {
  return new GatehouseError('GH_ERR_NOT_FOUND', `user "${user}" not found`, {
    hint: 'list users with `gatehouse users ls`',
    details: { user },
  });
}
