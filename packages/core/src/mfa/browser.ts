import { createHash, randomBytes } from 'node:crypto';
import type { AuditEmitter } from '@gatehouse/audit';
import type { Backend } from '../backend/types.js';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import { auditLoginFailure } from '../identity/login.js';
import type { MfaTarget } from '../identity/types.js';
import type { PublicKeyCredentialRequestOptionsJSON } from '../identity/webauthn.js';
import { cliRedirectUrl } from '../sso/connectors.js';
import { targetFields } from './session.js';
import { describeMfaTarget } from './target.js';

/**
 * A security key for the CLI (decision 0037, "CLI"): a key talks to a
 * browser, and its assertion is bound to the gateway's web origin (the RP
 * id), so the CLI cannot make it on its own, nor on a localhost page. The
 * CLI registers one pending check here (the WebAuthn options core began for
 * its login or its session target, and its loopback callback); the browser
 * opens the gateway's page `/web/mfa#ID`, which takes the pending check
 * (once), runs navigator.credentials.get with its options and sends the
 * assertion back to the CLI's callback with the CLI's `state`. The CLI
 * answers with that assertion through the usual routes (`/v1/login` with the
 * password, `/v1/mfa/session/certs` with its certificate), where
 * WebAuthnService checks it: the challenge's user, scope (login, or the
 * session's target), single use, origin and sign counter. Nothing is decided
 * here; this only carries the options to the right page, once.
 */

/** How long a link waits to be opened: as long as the WebAuthn challenge it carries. */
export const BROWSER_MFA_TTL_MS = 5 * 60_000;

const PENDING = 'mfa/browser/';
/** What a used link was for, so that opening it again is audited as that user's. */
const USED = 'mfa/browser_used/';
const hash = (id: string) => createHash('sha256').update(id).digest('hex');
const ID_RE = /^[A-Za-z0-9_-]{43}$/;
const STATE_RE = /^[A-Za-z0-9_-]{16,128}$/;

export type BrowserMfaPurpose = 'login' | 'session';

/** What the CLI sends to start one: where the browser goes back to, and the value it must bring back. */
export interface BrowserMfaStartRequest {
  /** The CLI's loopback callback: http://127.0.0.1:PORT/PATH. */
  redirect_url: string;
  /** Random, from the CLI: the callback accepts only an answer that carries it. */
  state: string;
}

export interface BrowserMfaStartResponse {
  /** The gateway page to open: `https://PUBLIC_ADDR/web/mfa#ID` (the id in the fragment stays out of logs and Referer). */
  url: string;
  expires: string;
}

/** POST /v1/mfa/browser/login: the password, and the callback for the security key's answer. */
export interface BrowserMfaLoginRequest extends BrowserMfaStartRequest {
  user: string;
  password: string;
}

/** What the user can answer with after the password: a key (the page to open) and/or an authenticator code. */
export interface BrowserMfaLoginResponse {
  totp: boolean;
  /** Absent when the user has no key here (or public_addr is no DNS name). */
  webauthn?: BrowserMfaStartResponse | undefined;
}

/** POST /v1/mfa/session/browser: a page to answer a pending per-session challenge with a key. */
export interface SessionMfaBrowserRequest extends BrowserMfaStartRequest {
  challenge_id: string;
}

/** POST /v1/mfa/browser/take: what the page needs, given out once. */
export interface BrowserMfaPage {
  user: string;
  purpose: BrowserMfaPurpose;
  /** What the check is for, in words ("sign-in", "ssh ops@web1"). */
  describe: string;
  target?: MfaTarget | undefined;
  options: PublicKeyCredentialRequestOptionsJSON;
  redirect_url: string;
  state: string;
}

interface Pending {
  user: string;
  purpose: BrowserMfaPurpose;
  target?: MfaTarget | undefined;
  options: PublicKeyCredentialRequestOptionsJSON;
  redirect_url: string;
  state: string;
  expires: string;
}

export interface BrowserMfaDeps {
  backend: Backend;
  clock: Clock;
  audit: AuditEmitter;
  /** The web origin WebAuthn assertions are made on (the relying party's origin). */
  webOrigin: () => string;
}

export class BrowserMfa {
  readonly #d: BrowserMfaDeps;

  constructor(deps: BrowserMfaDeps) {
    this.#d = deps;
  }

  /** Registers a pending check whose options core began for `user` and `purpose`; returns the page to open. */
  async create(
    req: BrowserMfaStartRequest,
    p: {
      user: string;
      purpose: BrowserMfaPurpose;
      target?: MfaTarget | undefined;
      options: PublicKeyCredentialRequestOptionsJSON;
    },
  ): Promise<BrowserMfaStartResponse> {
    const redirect = cliRedirectUrl(req.redirect_url);
    if (typeof req.state !== 'string' || !STATE_RE.test(req.state)) {
      throw new GatehouseError('GH_ERR_VALIDATION', 'state must be 16 to 128 base64url characters', {
        hint: 'send a random base64url value; the callback checks the browser brings it back',
      });
    }
    const origin = this.#d.webOrigin();
    const id = randomBytes(32).toString('base64url');
    const expires = new Date(this.#d.clock.now().getTime() + BROWSER_MFA_TTL_MS).toISOString();
    const rec: Pending = {
      user: p.user,
      purpose: p.purpose,
      ...(p.target ? { target: p.target } : {}),
      options: p.options,
      redirect_url: redirect.href,
      state: req.state,
      expires,
    };
    await this.#d.backend.create(PENDING + hash(id), JSON.stringify(rec), { ttlMs: BROWSER_MFA_TTL_MS });
    return { url: `${origin}/web/mfa#${id}`, expires };
  }

  /**
   * The page opens a link: the pending check is handed out once (deleted
   * first; of two concurrent opens only one gets it). A used, expired or
   * unknown link is refused and audited, as the user's when it was theirs.
   */
  async take(id: unknown, ctx: { remoteAddr?: string | undefined }): Promise<BrowserMfaPage> {
    const key = typeof id === 'string' && ID_RE.test(id) ? hash(id) : undefined;
    const item = key ? await this.#d.backend.get(PENDING + key) : undefined;
    type Was = { user: string; purpose: BrowserMfaPurpose; target?: MfaTarget | undefined };
    let was: Was | undefined;
    let used = false;
    if (key && item && (await this.#d.backend.delete(PENDING + key))) {
      const rec = JSON.parse(item.value) as Pending;
      was = { user: rec.user, purpose: rec.purpose, target: rec.target };
      // The injected clock decides, as for the WebAuthn challenge inside (the backend's TTL only cleans up).
      if (Date.parse(rec.expires) > this.#d.clock.now().getTime()) {
        await this.#d.backend.put(USED + key, JSON.stringify(was), { ttlMs: BROWSER_MFA_TTL_MS });
        return {
          user: rec.user,
          purpose: rec.purpose,
          describe: rec.target ? describeMfaTarget(rec.target) : 'sign-in',
          ...(rec.target ? { target: rec.target } : {}),
          options: rec.options,
          redirect_url: rec.redirect_url,
          state: rec.state,
        };
      }
    } else if (key) {
      const tomb = await this.#d.backend.get(USED + key);
      if (tomb) {
        was = JSON.parse(tomb.value) as Was;
        used = true;
      }
    }
    const err = new GatehouseError(
      'GH_ERR_WEBAUTHN_CHALLENGE_INVALID',
      used
        ? 'this security key link was already used'
        : 'this security key link is unknown or expired (links last 5 minutes)',
      { hint: 'run the gatehouse command again and open the new link it prints' },
    );
    await this.#refused(was, err, ctx);
    throw err;
  }

  async #refused(
    was: { user: string; purpose: BrowserMfaPurpose; target?: MfaTarget | undefined } | undefined,
    err: GatehouseError,
    ctx: { remoteAddr?: string | undefined },
  ): Promise<void> {
    if (was?.purpose === 'session' && was.target) {
      await this.#d.audit.emit({
        type: 'mfa.session',
        success: false,
        user: was.user,
        ...targetFields(was.target),
        method: 'webauthn',
        reason: 'challenge_invalid',
        error: err.message,
        ...(ctx.remoteAddr ? { addr: { remote: ctx.remoteAddr } } : {}),
      });
      return;
    }
    await auditLoginFailure(
      this.#d.audit,
      was?.user,
      'password',
      'webauthn_challenge_invalid',
      err,
      ctx.remoteAddr,
    );
  }
}
