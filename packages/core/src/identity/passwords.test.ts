import { describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import {
  checkPasswordPolicy,
  dummyVerify,
  hashPassword,
  MAX_PASSWORD_BYTES,
  verifyPassword,
} from './passwords.js';

describe('passwords', () => {
  it('hashes in the documented format and verifies', async () => {
    const h = await hashPassword('correct horse battery');
    expect(h).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
    expect(await verifyPassword('correct horse battery', h)).toBe(true);
    expect(await verifyPassword('correct horse batterY', h)).toBe(false);
    // Salted: the same password hashes differently each time.
    expect(await hashPassword('correct horse battery')).not.toBe(h);
  });

  it('normalizes Unicode so the same visible password verifies', async () => {
    const h = await hashPassword('caf\u00e9 au lait!!');
    expect(await verifyPassword('cafe\u0301 au lait!!', h)).toBe(true);
  });

  it('rejects malformed hashes and oversized input without throwing', async () => {
    expect(await verifyPassword('x', 'not-a-hash')).toBe(false);
    expect(
      await verifyPassword(
        'x',
        '$scrypt$ln=40,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      ),
    ).toBe(false);
    const h = await hashPassword('a long enough password');
    expect(await verifyPassword('a'.repeat(MAX_PASSWORD_BYTES + 1), h)).toBe(false);
    await expect(hashPassword('a'.repeat(MAX_PASSWORD_BYTES + 1))).rejects.toThrow(/longer than 1024 bytes/);
  });

  it('dummyVerify always says no', async () => {
    expect(await dummyVerify('anything')).toBe(false);
    expect(await dummyVerify('x'.repeat(10_000))).toBe(false);
  });

  it('enforces the policy', () => {
    expect(() => checkPasswordPolicy('short')).toThrow(GatehouseError);
    expect(() => checkPasswordPolicy('short')).toThrow(/too short \(5 characters\)/);
    expect(() => checkPasswordPolicy('twelve chars')).not.toThrow();
    expect(() => checkPasswordPolicy('eight ch', 8)).not.toThrow();
    // Bytes, not characters, bound the maximum: 400 three-byte characters are 1200 bytes.
    expect(() => checkPasswordPolicy('\u20ac'.repeat(400))).toThrow(/longer than 1024 bytes/);
    try {
      checkPasswordPolicy('short');
    } catch (e) {
      expect((e as GatehouseError).code).toBe('GH_ERR_VALIDATION');
      expect((e as GatehouseError).hint).toMatch(/at least 12 characters/);
    }
  });
});
