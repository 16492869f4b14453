import { describe, expect, it } from 'vitest';
import { chooseMfaMethod, parseMfaMode } from './browser-mfa.js';
import { noCliMethod } from './session-mfa.js';

// Which second factor the CLI answers with (--mfa-mode), before any prompt:
// these cases decide without a terminal.
describe('chooseMfaMethod', () => {
  it('auto takes the one method the user has', async () => {
    expect(await chooseMfaMethod('auto', { totp: false, webauthn: true }, 'ops@web1')).toBe('webauthn');
    expect(await chooseMfaMethod('auto', { totp: true, webauthn: false }, 'ops@web1')).toBe('totp');
  });

  it('a named mode the user has no device for is refused with the other one suggested', async () => {
    const key = await chooseMfaMethod('webauthn', { totp: true, webauthn: false }, 'ops@web1').catch(
      (e) => e,
    );
    expect(key.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
    expect(key.hint).toContain('--mfa-mode totp');
    const app = await chooseMfaMethod('totp', { totp: false, webauthn: true }, 'ops@web1').catch((e) => e);
    expect(app.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
    expect(app.hint).toContain('--mfa-mode webauthn');
    expect(await chooseMfaMethod('totp', { totp: true, webauthn: true }, 'ops@web1')).toBe('totp');
    expect(await chooseMfaMethod('webauthn', { totp: true, webauthn: true }, 'ops@web1')).toBe('webauthn');
  });

  it('no device at all says to enroll one', async () => {
    const e = await chooseMfaMethod('auto', { totp: false, webauthn: false }, 'ops@web1').catch((x) => x);
    expect(e.code).toBe('GH_ERR_SECOND_FACTOR_NOT_ENROLLED');
    expect(e.hint).toContain('gatehouse mfa add');
    expect(noCliMethod('cluster prod').hint).toContain('gatehouse users reset');
  });

  it('parseMfaMode takes totp, webauthn and auto only', () => {
    expect(parseMfaMode(undefined)).toBe('auto');
    expect(parseMfaMode('webauthn')).toBe('webauthn');
    expect(() => parseMfaMode('u2f')).toThrow(/unknown MFA mode/);
  });
});
