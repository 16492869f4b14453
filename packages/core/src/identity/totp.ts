import { Secret, TOTP } from 'otpauth';

/** RFC 6238 parameters every authenticator app understands. */
export const TOTP_DIGITS = 6;
export const TOTP_PERIOD_S = 30;
export const TOTP_ALGORITHM = 'SHA1';
/** Codes from one step before or after now are accepted (clock drift on phones). */
export const TOTP_WINDOW = 1;

/** A new random secret, base32 (what authenticator apps and otpauth:// URIs carry). */
export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

function totp(secret: string, label = 'gatehouse', issuer = ''): TOTP {
  return new TOTP({
    issuer,
    label,
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
    secret: Secret.fromBase32(secret),
  });
}

/** `otpauth://totp/<cluster>:<user>?secret=...` for a QR code. */
export function totpUri(user: string, cluster: string, secret: string): string {
  return totp(secret, user, cluster).toString();
}

/** The code for `at` (tests, and the CLI's own self-check). */
export function totpCode(secret: string, at: Date): string {
  return totp(secret).generate({ timestamp: at.getTime() });
}

export type TotpResult = { ok: true; counter: number } | { ok: false; reason: 'invalid' | 'reused' };

/**
 * Verify `code` at time `now`. The matched time step must be later than
 * `lastCounter` (the last step accepted for this device), so a code cannot be
 * used twice, even within its own 30 s window.
 */
export function verifyTotp(secret: string, code: string, lastCounter: number, now: Date): TotpResult {
  if (typeof code !== 'string' || !/^\d{6}$/.test(code)) return { ok: false, reason: 'invalid' };
  let t: TOTP;
  try {
    t = totp(secret);
  } catch {
    // An unreadable stored secret verifies nothing (fail closed).
    return { ok: false, reason: 'invalid' };
  }
  const timestamp = now.getTime();
  const delta = t.validate({ token: code, timestamp, window: TOTP_WINDOW });
  if (delta === null) return { ok: false, reason: 'invalid' };
  const counter = t.counter({ timestamp }) + delta;
  if (counter <= lastCounter) return { ok: false, reason: 'reused' };
  return { ok: true, counter };
}
