import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fuzz, hostileBytes, onlyThrows } from '../testing/fuzz.js';
import { decodeKrl, encodeKrl, type Krl, KrlError } from './krl.js';

const krl: fc.Arbitrary<Krl> = fc.record({
  version: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  generatedAt: fc.integer({ min: 0, max: 253402300799 }).map((s) => new Date(s * 1000)),
  comment: fc.string({ unit: 'grapheme', maxLength: 20 }),
  sections: fc.array(
    fc.record({
      caKey: fc.uint8Array({ minLength: 1, maxLength: 51 }),
      serials: fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 6 }),
    }),
    { maxLength: 3 },
  ),
});

describe('OpenSSH KRL (fuzz)', () => {
  it('decodeKrl reads back every serial encodeKrl writes, per CA key', () => {
    fuzz(
      fc.property(krl, (k) => {
        const d = decodeKrl(encodeKrl(k));
        expect(d.version).toBe(k.version);
        expect(d.generatedAt).toEqual(k.generatedAt);
        const want = new Map<string, Set<bigint>>();
        for (const s of k.sections) {
          if (s.serials.length === 0) continue;
          const hex = Buffer.from(s.caKey).toString('hex');
          const set = want.get(hex) ?? new Set<bigint>();
          for (const n of s.serials) set.add(n);
          want.set(hex, set);
        }
        expect(d.serials).toEqual(want);
      }),
      { runs: 1000 },
    );
  });

  it('throws only KrlError on damaged lists, and what it reads has a real date', () => {
    fuzz(
      fc.property(hostileBytes(krl.map(encodeKrl)), (b) => {
        const d = onlyThrows(() => decodeKrl(b), KrlError);
        if (d) expect(Number.isNaN(d.generatedAt.getTime())).toBe(false);
      }),
      { runs: 3000 },
    );
  });
});
