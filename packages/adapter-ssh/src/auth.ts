import {
  type Identity,
  NotACertificateError,
  type SshCertificate,
  verifyUserAuthIdentity,
} from '@gatehouse/core';
import { userMessage } from './errors.js';
import type { AuthContext, AuthenticationType } from './ssh2.js';

export interface CertAuthDeps {
  userCaKeys(): string[];
  /**
   * Whether the SSH user name is a node login the certificate must name (the
   * inner hop to a node). The outer hop's user name (`-J alice@proxy`) names
   * nobody's login and is not checked.
   */
  loginIsPrincipal: boolean;
  now(): Date;
  remoteAddr: string;
  /** Shows text to the user (USERAUTH_BANNER). */
  banner(text: string): void;
  /** A certificate that failed verification (for the audit log). */
  onInvalid(err: unknown): void;
}

const ONLY_CERTS =
  'Gatehouse: only Gatehouse certificates are accepted here.\n' +
  'Gatehouse: run `gatehouse login`, then `gatehouse ssh LOGIN@NODE` (or use the block `gatehouse config ssh` prints).';

/**
 * What one connection's authentication has told the client so far. `explained`:
 * the "only certificates" banner was sent (once per connection).
 */
export interface AuthState {
  explained: boolean;
}

/**
 * The methods a failure lists. keyboard-interactive is listed (never
 * accepted, never prompted for) so that a client that has run out of keys
 * tries it last: OpenSSH, PuTTY and ssh2 all try every key before it. That
 * attempt is the one moment the server knows authentication as a whole
 * failed, and the "only certificates" banner goes out then. Sent on a
 * refused plain key instead, it printed on every successful login whose
 * ssh-agent offered a plain key before the certificate. A client that does
 * not try keyboard-interactive (OpenSSH BatchMode) ends with "Permission
 * denied" and no banner.
 */
function methodsLeft(state: AuthState): AuthenticationType[] {
  return state.explained ? ['publickey'] : ['publickey', 'keyboard-interactive'];
}

/**
 * One ssh2 authentication attempt, certificates only. Returns the verified
 * certificate and identity once the client has proved it holds the key (a
 * signed request); the caller then authorizes and accepts or rejects. Every
 * other attempt is answered here: "none" and "may I use this key?" queries,
 * plain keys (refused quietly: a certificate may come next), and the
 * client's last resort (keyboard-interactive, password: refused with a
 * banner saying what to do).
 */
export function certAuthAttempt(
  actx: AuthContext,
  deps: CertAuthDeps,
  state: AuthState,
): { identity: Identity; cert: SshCertificate } | undefined {
  if (actx.method === 'none') {
    actx.reject(methodsLeft(state));
    return undefined;
  }
  if (actx.method !== 'publickey') {
    // Clients come here once their keys are used up: no certificate is coming.
    if (!state.explained) {
      state.explained = true;
      deps.banner(ONLY_CERTS);
    }
    actx.reject(['publickey']);
    return undefined;
  }
  try {
    // Core's one verifier, the login principal included: a certificate not
    // valid for this login is refused here, before anything is authorized.
    const r = verifyUserAuthIdentity(
      {
        ...(deps.loginIsPrincipal ? { login: actx.username } : {}),
        algo: actx.key.algo,
        keyBlob: actx.key.data,
        clientAddress: deps.remoteAddr,
        signature: actx.signature && actx.blob ? { data: actx.blob, blob: actx.signature } : undefined,
      },
      deps.userCaKeys(),
      deps.now(),
    );
    if (actx.signature === undefined) {
      // "May I use this key?": yes, the certificate is fine; the signed request follows.
      actx.accept();
      return undefined;
    }
    return r;
  } catch (err) {
    if (!(err instanceof NotACertificateError)) {
      deps.onInvalid(err);
      // Each distinct certificate problem is worth telling (expired vs untrusted); it
      // also says what to do, so the general "only certificates" banner is not needed.
      deps.banner(userMessage(err));
      state.explained = true;
    }
    actx.reject(methodsLeft(state));
    return undefined;
  }
}
