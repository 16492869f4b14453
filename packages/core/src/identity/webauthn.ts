import { createHash, randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { LoginFailureReason, MfaDeviceRef } from '@gatehouse/audit';
import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { decodeClientDataJSON } from '@simplewebauthn/server/helpers';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import {
  checkDeviceName,
  deviceRef,
  type MfaActor,
  type MfaDevices,
  type MfaDeviceView,
  updateDevice,
  webAuthnDevicesOf,
} from './mfa-devices.js';
import type { UserRecord, WebAuthnDeviceRecord } from './types.js';
import type { UserRecords } from './user-records.js';

export type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server';

/**
 * WebAuthn (security keys and passkeys) for local users, through
 * @simplewebauthn/server: registration and assertion options, and their
 * verification (attestation and assertion parsing is the library's).
 * Challenges are kept server-side, each good for one try and 5 minutes.
 *
 * The small API other parts use: beginRegistration/finishRegistration (the
 * account page), beginAssertion/finishAssertion for a named user (the second
 * factor at login; a fresh check for per-session MFA) or for whoever the
 * credential belongs to (passwordless login with a passkey).
 */

/** The relying party: the gateway's public web address (config `public_addr`). */
export interface RelyingParty {
  /** The RP id: the host of `public_addr` (a DNS name; browsers refuse IP addresses). */
  id: string;
  name: string;
  /** Origins assertions must come from: `https://<public_addr>` (no port when it is 443). */
  origins: string[];
}

/**
 * The relying party for a gateway reached at `publicAddr` (host:port). An IP
 * address cannot be an RP id, so WebAuthn is unavailable until `public_addr`
 * is the DNS name users open in their browser.
 */
export function relyingPartyFor(publicAddr: string, clusterName: string): RelyingParty {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(publicAddr);
  const host = (m?.[1] ?? m?.[2] ?? '').toLowerCase();
  const port = Number(m?.[3]);
  if (!m || isIP(host) !== 0 || !/^[a-z0-9.-]+$/.test(host)) {
    throw new GatehouseError(
      'GH_ERR_WEBAUTHN_UNAVAILABLE',
      `security keys and passkeys need a DNS name in public_addr (it is ${publicAddr})`,
      {
        hint: 'set public_addr to the host:port users open in the browser, e.g. gatehouse.example.com:443 (localhost:PORT for a local test)',
      },
    );
  }
  return {
    id: host,
    name: `Gatehouse ${clusterName}`,
    origins: [port === 443 ? `https://${host}` : `https://${host}:${port}`],
  };
}

/** What a challenge was issued for; an answer is accepted only for the same. */
export type WebAuthnPurpose =
  /** Adding a key or passkey to `user`. */
  | 'register'
  /** The second factor of `user`'s login (or a fresh check for the signed-in `user`). */
  | 'assert'
  /** Passwordless login: any user's passkey, with user verification. */
  | 'passwordless';

interface ChallengeRecord {
  purpose: WebAuthnPurpose;
  user?: string | undefined;
  /** What the assertion is for, as the caller names it (`login`, or e.g. a session target): must match. */
  scope?: string | undefined;
  /** register: a passkey (discoverable, user verification) rather than a second-factor key. */
  passkey?: boolean | undefined;
  expires: string;
}

/** A refused assertion: the caller audits it (a login, a per-session check) with `reason` and `device`. */
export class WebAuthnRefusal extends GatehouseError {
  readonly reason: Extract<LoginFailureReason, `webauthn_${string}`>;
  readonly device: MfaDeviceRef | undefined;
  /** Whose credential it was, when that is known. */
  readonly user: string | undefined;

  constructor(
    err: GatehouseError,
    reason: WebAuthnRefusal['reason'],
    extra: { device?: MfaDeviceRef | undefined; user?: string | undefined } = {},
  ) {
    super(err.code, err.message, {
      ...(err.hint ? { hint: err.hint } : {}),
      ...(err.cause !== undefined ? { cause: err.cause } : {}),
      details: { ...err.details, reason },
    });
    this.reason = reason;
    this.device = extra.device;
    this.user = extra.user;
  }
}

export interface WebAuthnServiceOptions {
  backend: Backend;
  records: UserRecords;
  clock: Clock;
  devices: MfaDevices;
  /** Read at each use: the public address may be known only once the gateway listens (port 0). */
  rp: () => RelyingParty;
  /** Default 5 minutes. */
  challengeTtlMs?: number | undefined;
}

const CHALLENGES = 'webauthn_challenges/';
/** Credential user handle (the user record's id) -> user name, for passwordless login. */
const HANDLES = 'webauthn_handles/';
const DEFAULT_CHALLENGE_TTL_MS = 5 * 60_000;
/** The scope of login challenges (beginAssertion without one). */
const DEFAULT_SCOPE = 'login';

export class WebAuthnService {
  readonly #d: WebAuthnServiceOptions;
  readonly #ttlMs: number;

  constructor(opts: WebAuthnServiceOptions) {
    this.#d = opts;
    this.#ttlMs = opts.challengeTtlMs ?? DEFAULT_CHALLENGE_TTL_MS;
  }

  /** The relying party (throws GH_ERR_WEBAUTHN_UNAVAILABLE when public_addr is no DNS name). */
  relyingParty(): RelyingParty {
    return this.#d.rp();
  }

  /**
   * Options for navigator.credentials.create() to add a key to `user`. A
   * passkey is discoverable and verifies the user (PIN, biometrics): it can
   * sign in without a password. Keys the user has are excluded.
   */
  async beginRegistration(
    user: string,
    opts: { passkey: boolean },
  ): Promise<PublicKeyCredentialCreationOptionsJSON> {
    const rp = this.#d.rp();
    const rec = await this.#user(user);
    // A record from before user ids gets one now: it is the credential's user handle.
    const id =
      rec.id ?? (await this.#d.records.mutate(user, (c) => ({ ...c, id: c.id ?? randomUUID() }))).id!;
    const options = await generateRegistrationOptions({
      rpName: rp.name,
      rpID: rp.id,
      userName: user,
      userID: new TextEncoder().encode(id),
      userDisplayName: user,
      timeout: this.#ttlMs,
      attestationType: 'none',
      excludeCredentials: webAuthnDevicesOf(rec).map((d) => ({
        id: d.credentialId,
        transports: d.transports,
      })),
      authenticatorSelection: opts.passkey
        ? { residentKey: 'required', requireResidentKey: true, userVerification: 'required' }
        : { residentKey: 'discouraged', userVerification: 'preferred' },
    });
    await this.#storeChallenge(options.challenge, { purpose: 'register', user, passkey: opts.passkey });
    return options;
  }

  /** Verifies the browser's answer to beginRegistration and adds the key as device `name`. */
  async finishRegistration(
    user: string,
    req: { name: string; response: RegistrationResponseJSON },
    by: MfaActor,
  ): Promise<MfaDeviceView> {
    const devices = this.#d.devices;
    let name: string;
    try {
      name = checkDeviceName(req.name);
    } catch (e) {
      throw await devices.refuseAdd(
        user,
        String(req.name ?? '').slice(0, 64),
        'invalid',
        e as GatehouseError,
        by,
      );
    }
    const rp = this.#d.rp();
    const challenge = await this.#consumeChallenge(req.response, 'register', user);
    if (!challenge) {
      throw await devices.refuseAdd(user, name, 'challenge_invalid', challengeInvalid(), by);
    }
    let info: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
    try {
      info = await verifyRegistrationResponse({
        response: req.response,
        expectedChallenge: challenge.challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        requireUserVerification: challenge.record.passkey === true,
      });
    } catch (e) {
      throw await devices.refuseAdd(user, name, 'invalid', verificationFailed('registration', e), by);
    }
    if (!info.verified) {
      throw await devices.refuseAdd(user, name, 'invalid', verificationFailed('registration'), by);
    }
    const r = info.registrationInfo;
    const device: WebAuthnDeviceRecord = {
      kind: 'webauthn',
      id: randomUUID(),
      name,
      credentialId: r.credential.id,
      publicKey: Buffer.from(r.credential.publicKey).toString('base64url'),
      counter: r.credential.counter,
      transports: [...(req.response.response.transports ?? [])].slice(0, 8).map(String),
      passkey: challenge.record.passkey === true && r.userVerified,
      backedUp: r.credentialBackedUp,
      addedAt: this.#d.clock.now().toISOString(),
    };
    const view = await devices.add(user, device, by);
    const rec = await this.#user(user);
    if (rec.id) await this.#d.backend.put(HANDLES + rec.id, JSON.stringify({ user }));
    return view;
  }

  /**
   * Options for navigator.credentials.get(). For a `user`: their keys, user
   * verification preferred (a second factor after the password). Without
   * one: any passkey, user verification required (passwordless).
   */
  async beginAssertion(
    opts: {
      user?: string | undefined;
      /**
       * Binds the challenge to one use the caller names (default `login`):
       * finishAssertion with another scope refuses it. Per-session MFA can
       * name the session's target, so a check for one target opens no other.
       */
      scope?: string | undefined;
    } = {},
  ): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const scope = opts.scope ?? DEFAULT_SCOPE;
    const rp = this.#d.rp();
    if (opts.user === undefined) {
      const options = await generateAuthenticationOptions({
        rpID: rp.id,
        timeout: this.#ttlMs,
        userVerification: 'required',
      });
      await this.#storeChallenge(options.challenge, { purpose: 'passwordless', scope });
      return options;
    }
    const rec = await this.#user(opts.user);
    const keys = webAuthnDevicesOf(rec);
    if (keys.length === 0) {
      throw new GatehouseError('GH_ERR_SECOND_FACTOR_NOT_ENROLLED', 'you have no security key or passkey', {
        hint: 'enter a code from your authenticator app instead, or add a key on the account page',
      });
    }
    const options = await generateAuthenticationOptions({
      rpID: rp.id,
      timeout: this.#ttlMs,
      userVerification: 'preferred',
      allowCredentials: keys.map((d) => ({ id: d.credentialId, transports: d.transports })),
    });
    await this.#storeChallenge(options.challenge, { purpose: 'assert', user: opts.user, scope });
    return options;
  }

  /**
   * Verifies an assertion: for `user` (a second factor), or passwordless
   * (the credential's user handle names the user; it must be a passkey and
   * verify the user). The sign counter must go up; the new counter and the
   * time of use are stored. Throws WebAuthnRefusal, which the caller audits.
   */
  async finishAssertion(
    response: AuthenticationResponseJSON,
    opts: { user?: string | undefined; scope?: string | undefined } = {},
  ): Promise<{ user: UserRecord; device: WebAuthnDeviceRecord }> {
    const rp = this.#d.rp();
    const purpose: WebAuthnPurpose = opts.user === undefined ? 'passwordless' : 'assert';
    // Consumed first, whatever follows: a challenge is good for one try.
    const challenge = await this.#consumeChallenge(response, purpose, opts.user, opts.scope ?? DEFAULT_SCOPE);
    if (!challenge)
      throw new WebAuthnRefusal(challengeInvalid(), 'webauthn_challenge_invalid', { user: opts.user });

    const rec = opts.user === undefined ? await this.ownerOf(response) : await this.#d.records.get(opts.user);
    const device = rec
      ? webAuthnDevicesOf(rec).find(
          (d) => d.credentialId === response.id && (opts.user !== undefined || d.passkey),
        )
      : undefined;
    if (!rec || !device) {
      throw new WebAuthnRefusal(
        new GatehouseError('GH_ERR_WEBAUTHN_INVALID', 'this security key or passkey is not registered here', {
          hint:
            opts.user === undefined
              ? 'sign in with your password, then add the passkey on the account page (as a passkey)'
              : 'use a key from your device list, or an authenticator code',
        }),
        'webauthn_unknown_credential',
        { user: rec?.name ?? opts.user },
      );
    }
    const ref = deviceRef(device);
    let info: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
    try {
      info = await verifyAuthenticationResponse({
        response,
        expectedChallenge: challenge.challenge,
        expectedOrigin: rp.origins,
        expectedRPID: rp.id,
        credential: {
          id: device.credentialId,
          publicKey: new Uint8Array(Buffer.from(device.publicKey, 'base64url')),
          // The counter policy is ours (counterWentUp), checked below against the stored value.
          counter: 0,
          transports: device.transports as never,
        },
        requireUserVerification: purpose === 'passwordless',
      });
    } catch (e) {
      throw new WebAuthnRefusal(verificationFailed('assertion', e), 'webauthn_invalid', {
        device: ref,
        user: rec.name,
      });
    }
    if (!info.verified) {
      throw new WebAuthnRefusal(verificationFailed('assertion'), 'webauthn_invalid', {
        device: ref,
        user: rec.name,
      });
    }
    const newCounter = info.authenticationInfo.newCounter;
    const now = this.#d.clock.now().toISOString();
    const updated = await this.#d.records.mutate(rec.name, (cur) => {
      const d = webAuthnDevicesOf(cur).find((x) => x.id === device.id);
      if (!d) throw credentialGone(rec.name, ref);
      // Checked in the compare-and-swap: two logins with one assertion cannot both pass.
      if (!counterWentUp(d.counter, newCounter)) {
        throw counterRefused(rec.name, ref, newCounter, d.counter);
      }
      return updateDevice(
        cur,
        d.id,
        (x) => ({ ...x, counter: newCounter, lastUsedAt: now }) as WebAuthnDeviceRecord,
      );
    });
    return { user: updated, device: webAuthnDevicesOf(updated).find((d) => d.id === device.id)! };
  }

  /** Forgets the passwordless lookup of a deleted user (the devices go with the record). */
  async forgetUser(rec: UserRecord): Promise<void> {
    if (rec.id) await this.#d.backend.delete(HANDLES + rec.id);
  }

  /** Whose passkey answered (its user handle), if it is a current user's. */
  async ownerOf(response: AuthenticationResponseJSON): Promise<UserRecord | undefined> {
    const handle = response.response?.userHandle;
    if (typeof handle !== 'string' || handle.length > 128) return undefined;
    const id = Buffer.from(handle, 'base64url').toString('utf8');
    const item = await this.#d.backend.get(HANDLES + id);
    if (!item) return undefined;
    const { user } = JSON.parse(item.value) as { user: string };
    const rec = await this.#d.records.get(user);
    // A user deleted and re-created under the name has another id: not the passkey's user.
    return rec?.id === id ? rec : undefined;
  }

  async #user(name: string): Promise<UserRecord> {
    const rec = await this.#d.records.get(name);
    if (!rec) {
      throw new GatehouseError('GH_ERR_NOT_FOUND', `user "${name}" not found`, {
        hint: 'list users with `gatehouse users ls`',
        details: { user: name },
      });
    }
    return rec;
  }

  async #storeChallenge(challenge: string, rec: Omit<ChallengeRecord, 'expires'>): Promise<void> {
    const expires = new Date(this.#d.clock.now().getTime() + this.#ttlMs).toISOString();
    await this.#d.backend.create(CHALLENGES + sha256(challenge), JSON.stringify({ ...rec, expires }), {
      ttlMs: this.#ttlMs,
    });
  }

  /**
   * Takes the challenge the response answers out of the store (only one
   * caller's delete succeeds) and returns it if it was issued for `purpose`
   * and `user` and has not expired.
   */
  async #consumeChallenge(
    response: { response?: { clientDataJSON?: unknown } } | undefined,
    purpose: WebAuthnPurpose,
    user: string | undefined,
    scope?: string | undefined,
  ): Promise<{ challenge: string; record: ChallengeRecord } | undefined> {
    let challenge: string;
    try {
      const data = response?.response?.clientDataJSON;
      if (typeof data !== 'string' || data.length > 4096) return undefined;
      challenge = decodeClientDataJSON(data).challenge;
    } catch {
      // Not client data at all: there is no challenge it could answer.
      return undefined;
    }
    if (typeof challenge !== 'string' || challenge.length > 256) return undefined;
    const key = CHALLENGES + sha256(challenge);
    const item = await this.#d.backend.get(key);
    if (!item || !(await this.#d.backend.delete(key))) return undefined;
    const record = JSON.parse(item.value) as ChallengeRecord;
    if (record.purpose !== purpose || record.user !== user || record.scope !== scope) return undefined;
    if (Date.parse(record.expires) <= this.#d.clock.now().getTime()) return undefined;
    return { challenge, record };
  }
}

/**
 * The counter policy: a counter must be higher than the last one seen, so a
 * cloned key (two devices counting from the same value) or a replayed
 * assertion shows. Authenticators that keep no counter (many synced passkeys)
 * always send 0; 0 after 0 is accepted.
 */
export function counterWentUp(stored: number, received: number): boolean {
  if (stored === 0 && received === 0) return true;
  return received > stored;
}

function counterRefused(
  user: string,
  device: MfaDeviceRef,
  received: number,
  stored: number,
): WebAuthnRefusal {
  return new WebAuthnRefusal(
    new GatehouseError(
      'GH_ERR_WEBAUTHN_COUNTER',
      `the sign counter of "${device.name}" did not go up (${received} after ${stored}): the key may be cloned`,
      {
        hint: 'use another factor and tell an admin; if the key is yours and not cloned, remove it and add it again',
        details: { counter: received, stored_counter: stored },
      },
    ),
    'webauthn_counter',
    { device, user },
  );
}

function credentialGone(user: string, device: MfaDeviceRef): WebAuthnRefusal {
  return new WebAuthnRefusal(
    new GatehouseError('GH_ERR_WEBAUTHN_INVALID', `"${device.name}" was removed`, {
      hint: 'use another of your devices',
    }),
    'webauthn_unknown_credential',
    { device, user },
  );
}

function challengeInvalid(): GatehouseError {
  return new GatehouseError(
    'GH_ERR_WEBAUTHN_CHALLENGE_INVALID',
    'this security key challenge is unknown, expired or already used',
    { hint: 'start again: each challenge is good for one try and 5 minutes' },
  );
}

function verificationFailed(what: 'registration' | 'assertion', cause?: unknown): GatehouseError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new GatehouseError('GH_ERR_WEBAUTHN_INVALID', `the security key ${what} is not valid${why}`, {
    hint: "open the web UI at the gateway's own address (public_addr) and try again",
    ...(cause !== undefined ? { cause } : {}),
  });
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}
