import {
  type Identity,
  NotACertificateError,
  type SshCertificate,
  verifyUserAuthIdentity,
} from '@gatehouse/core';
import { userMessage } from './errors.js';
import type { AuthContext } from './ssh2.js';

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
 * One ssh2 authentication attempt, certificates only. Returns the verified
 * certificate and identity once the client has proved it holds the key (a
 * signed request); the caller then authorizes and accepts or rejects. Every
 * other attempt is answered here: "none" and "may I use this key?" queries,
 * passwords and plain keys (refused with a banner saying what to do).
 */
export function certAuthAttempt(
  actx: AuthContext,
  deps: CertAuthDeps,
  state: { explained: boolean },
): { identity: Identity; cert: SshCertificate } | undefined {
  const explain = (text: string) => {
    if (state.explained) return;
    state.explained = true;
    deps.banner(text);
  };
  if (actx.method === 'none') {
    actx.reject(['publickey']);
    return undefined;
  }
  if (actx.method !== 'publickey') {
    explain(ONLY_CERTS);
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
    if (err instanceof NotACertificateError) explain(ONLY_CERTS);
    else {
      deps.onInvalid(err);
      // Each distinct certificate problem is worth telling (expired vs untrusted).
      deps.banner(userMessage(err));
    }
    actx.reject(['publickey']);
    return undefined;
  }
}
