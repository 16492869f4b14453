import { describe, expect, it } from 'vitest';
import { utils } from './ssh2.js';

describe("ssh2's Ed25519 key generation (patched)", () => {
  it('produces keys parseKey accepts, including those whose public key starts with a zero byte', () => {
    // Unpatched, the generator stripped every leading zero of the public key
    // (1 key in 256) and parseKey rejected the result as malformed.
    let zeroLed = 0;
    for (let i = 0; i < 20_000 && zeroLed < 2; i++) {
      const kp = utils.generateKeyPairSync('ed25519');
      const parsed = utils.parseKey(kp.private);
      expect(parsed).not.toBeInstanceOf(Error);
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      const pub = (key as { getPublicSSH(): Buffer }).getPublicSSH();
      // string "ssh-ed25519" (4 + 11 bytes), then string key (4 + 32 bytes)
      expect(pub.length).toBe(4 + 11 + 4 + 32);
      if (pub[19] === 0) zeroLed++;
    }
    expect(zeroLed).toBe(2);
  });
});
