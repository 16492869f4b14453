import type { MfaDeviceRef } from '@gatehouse/audit';
import type { Clock } from '../clock.js';
import type { Sealer } from '../crypto/seal.js';
import { type ErrorCode, GatehouseError } from '../errors.js';
import {
  deviceRef,
  matchTotp,
  mfaDevicesOf,
  updateDevice,
  webAuthnDevicesOf,
} from '../identity/mfa-devices.js';
import type { MfaTarget, UserRecord } from '../identity/types.js';
import type { UserRecords } from '../identity/user-records.js';
import {
  type AuthenticationResponseJSON,
  WebAuthnRefusal,
  type WebAuthnService,
} from '../identity/webauthn.js';
import { mfaTargetJson } from '../pki/identity-codec.js';

/**
 * Second-factor methods behind one challenge/response interface, so a
 * per-session MFA check does not care which device answers it: TOTP
 * (`TotpMethod`) and security keys / passkeys (`WebAuthnMethod`, over
 * identity/webauthn.ts's WebAuthnService), in the list `createGateway`
 * passes to SessionMfa.
 */
export type MfaMethodName = 'totp' | 'webauthn';

/** One registered device of a user, as audit events (`mfa_device`, as user.login's) and the challenge name it. */
export type MfaDevice = MfaDeviceRef;

/** What the client sends back for one method. */
export type MfaResponse =
  | { method: 'totp'; code: string }
  /** The browser's PublicKeyCredential as JSON (@simplewebauthn/browser's startAuthentication). */
  | { method: 'webauthn'; credential: Record<string, unknown> };

/** A method's offer in a challenge: which devices may answer, and what they need (WebAuthn: assertion options). */
export interface MfaMethodChallenge {
  method: MfaMethodName;
  devices: string[];
  /** Method-specific data for the client (none for TOTP). */
  data?: Record<string, unknown> | undefined;
}

/** Why a response was refused (the audit event's reason). */
export type MfaFailureReason =
  | 'invalid'
  | 'reused'
  | 'no_device'
  | 'unsupported_method'
  /** WebAuthn: the assertion answers no challenge of this check (another target's, used, expired). */
  | 'challenge_invalid'
  /** WebAuthn: the sign counter did not go up (a cloned key, or a replayed assertion). */
  | 'counter';

export class MfaResponseError extends GatehouseError {
  readonly reason: MfaFailureReason;
  readonly device: MfaDevice | undefined;
  constructor(
    reason: MfaFailureReason,
    message: string,
    hint: string,
    device?: MfaDevice,
    code: ErrorCode = 'GH_ERR_SECOND_FACTOR_INVALID',
  ) {
    super(code, message, { hint, details: { reason } });
    this.reason = reason;
    this.device = device;
  }
}

/**
 * What a check is for. A method whose challenge can carry it binds it there:
 * WebAuthn's `beginAssertion({ user, scope })` / `finishAssertion(response,
 * { user, scope })` with `scope` = `session:` + the target's canonical JSON
 * (pki/identity-codec `mfaTargetJson`), so an assertion made for one target
 * answers no other check.
 */
export interface MfaCheckContext {
  target: MfaTarget;
}

export interface SecondFactorMethod {
  readonly method: MfaMethodName;
  /** The user's devices this method can check (empty: the method is not offered to this user). */
  devices(user: UserRecord): MfaDevice[];
  /**
   * Starts a check: `client` goes to the client in the challenge, `state`
   * stays on the server (stored with the challenge) until the answer comes.
   */
  begin(
    user: UserRecord,
    ctx: MfaCheckContext,
  ): Promise<{ client?: Record<string, unknown>; state?: Record<string, unknown> }>;
  /** Checks the answer; resolves with the device that gave it or rejects with MfaResponseError. */
  finish(
    user: UserRecord,
    state: Record<string, unknown> | undefined,
    response: MfaResponse,
    ctx: MfaCheckContext,
  ): Promise<MfaDevice>;
}

class ReusedCode extends Error {}

/**
 * TOTP as a session check: every TOTP device of the user is tried, with the
 * same code rules as login (RFC 6238, one step of drift, each time step used
 * once per device, shared with logins, so a code typed at login cannot open a
 * session too).
 */
export class TotpMethod implements SecondFactorMethod {
  readonly method = 'totp' as const;
  readonly #d: { records: UserRecords; sealer: Sealer; clock: Clock };

  constructor(deps: { records: UserRecords; sealer: Sealer; clock: Clock }) {
    this.#d = deps;
  }

  devices(user: UserRecord): MfaDevice[] {
    return mfaDevicesOf(user)
      .filter((d) => d.kind === 'totp')
      .map((d) => deviceRef(d));
  }

  async begin(): Promise<{ client?: Record<string, unknown>; state?: Record<string, unknown> }> {
    // Nothing to send: the app shows the code by itself.
    return {};
  }

  async finish(user: UserRecord, _state: unknown, response: MfaResponse): Promise<MfaDevice> {
    if (response.method !== 'totp') {
      throw new MfaResponseError('unsupported_method', 'not a TOTP answer', 'send the authenticator code');
    }
    if (this.devices(user).length === 0) {
      throw new MfaResponseError(
        'no_device',
        'no authenticator app is enrolled for this user',
        'add one with gatehouse mfa add, or ask an admin for a reset link (gatehouse users reset <name>)',
      );
    }
    const now = this.#d.clock.now();
    const r = matchTotp(user, response.code, now, this.#d.sealer);
    if (!r.ok) throw totpRefused(r.reason, r.device ? deviceRef(r.device) : undefined);
    const device = deviceRef(r.device);
    const at = now.toISOString();
    try {
      // The step is used up, by compare-and-swap: a concurrent use of the same code loses.
      await this.#d.records.mutate(user.name, (cur) => {
        const d = mfaDevicesOf(cur).find((x) => x.id === r.device.id);
        if (d?.kind !== 'totp' || d.lastCounter >= r.counter) throw new ReusedCode();
        return updateDevice(cur, d.id, (x) => ({ ...x, lastCounter: r.counter, lastUsedAt: at }) as typeof d);
      });
    } catch (e) {
      if (e instanceof ReusedCode) throw totpRefused('reused', device);
      throw e;
    }
    return device;
  }
}

/** The WebAuthn scope of a session check: an assertion begun for one target answers no other. */
export function sessionScope(target: MfaTarget): string {
  return `session:${mfaTargetJson(target)}`;
}

/**
 * Security keys and passkeys as a session check: the challenge carries
 * assertion options for the user's keys, begun with the scope of the
 * target (`sessionScope`), and the answer is verified by WebAuthnService
 * with the same scope, sign counter included. The service keeps its own
 * single-use challenge, so this method stores no state.
 */
export class WebAuthnMethod implements SecondFactorMethod {
  readonly method = 'webauthn' as const;
  readonly #webauthn: WebAuthnService;

  constructor(webauthn: WebAuthnService) {
    this.#webauthn = webauthn;
  }

  devices(user: UserRecord): MfaDevice[] {
    const keys = webAuthnDevicesOf(user);
    // Without a relying party (public_addr is no DNS name) no key can answer: offer the others.
    if (keys.length === 0 || !this.#available()) return [];
    return keys.map((d) => deviceRef(d));
  }

  #available(): boolean {
    try {
      this.#webauthn.relyingParty();
      return true;
    } catch (e) {
      if (e instanceof GatehouseError && e.code === 'GH_ERR_WEBAUTHN_UNAVAILABLE') return false;
      throw e;
    }
  }

  async begin(
    user: UserRecord,
    ctx: MfaCheckContext,
  ): Promise<{ client?: Record<string, unknown>; state?: Record<string, unknown> }> {
    const options = await this.#webauthn.beginAssertion({ user: user.name, scope: sessionScope(ctx.target) });
    return { client: options as unknown as Record<string, unknown> };
  }

  async finish(
    user: UserRecord,
    _state: unknown,
    response: MfaResponse,
    ctx: MfaCheckContext,
  ): Promise<MfaDevice> {
    if (response.method !== 'webauthn' || typeof response.credential !== 'object' || !response.credential) {
      throw new MfaResponseError(
        'unsupported_method',
        'not a security key answer',
        'send the credential your browser returned for the challenge',
      );
    }
    try {
      const { device } = await this.#webauthn.finishAssertion(
        response.credential as unknown as AuthenticationResponseJSON,
        { user: user.name, scope: sessionScope(ctx.target) },
      );
      return deviceRef(device);
    } catch (e) {
      if (!(e instanceof WebAuthnRefusal)) throw e;
      const reason: MfaFailureReason =
        e.reason === 'webauthn_challenge_invalid'
          ? 'challenge_invalid'
          : e.reason === 'webauthn_counter'
            ? 'counter'
            : 'invalid';
      throw new MfaResponseError(reason, e.message, e.hint ?? 'try again with a new check', e.device, e.code);
    }
  }
}

function totpRefused(reason: 'invalid' | 'reused', device: MfaDevice | undefined): MfaResponseError {
  return reason === 'reused'
    ? new MfaResponseError(
        'reused',
        'this authenticator code was already used',
        'wait for your authenticator app to show a new code and try again',
        device,
      )
    : new MfaResponseError(
        'invalid',
        'the authenticator code is not valid',
        "check that your phone's clock is right and enter the current code",
        device,
      );
}
