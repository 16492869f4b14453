import { Secret, TOTP } from 'otpauth';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.js';
import { newTotpSecret, totpUri, verifyTotp } from './totp.js';

/** Codes from otpauth itself, independent of our wrapper. */
function codeAt(secret: string, at: Date): string {
  return TOTP.generate({
    secret: Secret.fromBase32(secret),
    algorithm: 'SHA1',
    digits: 6,
    period: 30,
    timestamp: at.getTime(),
  });
}

describe('totp', () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 10));

  it('makes 160-bit base32 secrets and an otpauth URI', () => {
    const s = newTotpSecret();
    expect(s).toMatch(/^[A-Z2-7]{32}$/);
    expect(newTotpSecret()).not.toBe(s);
    const uri = totpUri('alice', 'acme', s);
    expect(uri).toBe(`otpauth://totp/acme:alice?issuer=acme&secret=${s}&algorithm=SHA1&digits=6&period=30`);
  });

  it('accepts the current code and one step either side', () => {
    const s = newTotpSecret();
    const now = clock.now();
    const step = Math.floor(now.getTime() / 30_000);
    expect(verifyTotp(s, codeAt(s, now), -1, now)).toEqual({ ok: true, counter: step });
    expect(verifyTotp(s, codeAt(s, new Date(now.getTime() - 30_000)), -1, now)).toEqual({
      ok: true,
      counter: step - 1,
    });
    expect(verifyTotp(s, codeAt(s, new Date(now.getTime() + 30_000)), -1, now)).toEqual({
      ok: true,
      counter: step + 1,
    });
    expect(verifyTotp(s, codeAt(s, new Date(now.getTime() - 60_000)), -1, now)).toEqual({
      ok: false,
      reason: 'invalid',
    });
  });

  it('rejects a code reused within its window', () => {
    const s = newTotpSecret();
    const c = new ManualClock(clock.now());
    const code = codeAt(s, c.now());
    const first = verifyTotp(s, code, -1, c.now());
    expect(first.ok).toBe(true);
    const last = first.ok ? first.counter : -1;
    c.advance(10_000);
    expect(verifyTotp(s, code, last, c.now())).toEqual({ ok: false, reason: 'reused' });
    // The next step's code is fine.
    c.advance(30_000);
    expect(verifyTotp(s, codeAt(s, c.now()), last, c.now())).toMatchObject({ ok: true, counter: last + 1 });
  });

  it('rejects malformed codes and wrong secrets', () => {
    const s = newTotpSecret();
    const now = clock.now();
    expect(verifyTotp(s, '12345', -1, now)).toEqual({ ok: false, reason: 'invalid' });
    expect(verifyTotp(s, '12345a', -1, now)).toEqual({ ok: false, reason: 'invalid' });
    expect(verifyTotp(s, ` ${codeAt(s, now)}`, -1, now)).toEqual({ ok: false, reason: 'invalid' });
    expect(verifyTotp(newTotpSecret(), codeAt(s, now), -1, now)).toEqual({ ok: false, reason: 'invalid' });
  });
});
