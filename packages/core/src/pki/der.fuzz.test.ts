import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoDate } from '../testing/arbitraries.js';
import { fuzz, hostileBytes, onlyThrows } from '../testing/fuzz.js';
import {
  children,
  DerError,
  decodeOid,
  decodeTime,
  derToPem,
  oid,
  pemToDer,
  readOnly,
  readTlv,
  seq,
  type Tlv,
  time,
  tlv,
  uintBytes,
} from './der.js';

/** Single-byte tags (the reader refuses the multi-byte form). */
const tag = fc.integer({ min: 0, max: 255 }).filter((t) => (t & 0x1f) !== 0x1f);

/** A DER tree of small depth: primitives and constructed SEQUENCE/SET/[n] around them. */
const derTree: fc.Arbitrary<Buffer> = fc.letrec<{ node: Buffer }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(tag, fc.uint8Array({ maxLength: 300 })).map(([t, v]) => tlv(t, v)),
    fc
      .tuple(fc.constantFrom(0x30, 0x31, 0xa0, 0xa3), fc.array(tie('node'), { maxLength: 4 }))
      .map(([t, kids]) => tlv(t, ...kids)),
  ),
})).node;

/** Dotted OIDs oid() accepts and decodeOid can give back (X.660: arc two of 0.x and 1.x is below 40). */
const dottedOid = fc
  .tuple(
    fc.integer({ min: 0, max: 2 }),
    fc.bigInt({ min: 0n, max: 2n ** 70n }),
    fc.array(fc.bigInt({ min: 0n, max: 2n ** 70n }), { maxLength: 8 }),
  )
  .map(([a, b, rest]) => [a, a < 2 ? b % 40n : b, ...rest].join('.'));

function inside(t: Tlv, buf: Uint8Array): void {
  expect(t.bytes.buffer).toBe(buf.buffer);
  expect(t.bytes.byteOffset).toBeGreaterThanOrEqual(buf.byteOffset);
  expect(t.bytes.byteOffset + t.bytes.length).toBeLessThanOrEqual(buf.byteOffset + buf.length);
  expect(t.value.byteOffset + t.value.length).toBe(t.bytes.byteOffset + t.bytes.length);
}

describe('DER reader (fuzz)', () => {
  it('readTlv, children and readOnly throw only DerError and stay inside their input', () => {
    fuzz(
      fc.property(hostileBytes(derTree), fc.nat(), (b, off) => {
        const t = onlyThrows(() => readTlv(b, off % (b.length + 1)), DerError);
        if (t) inside(t, b);
        for (const k of onlyThrows(() => children(b), DerError) ?? []) inside(k, b);
        const only = onlyThrows(() => readOnly(b), DerError);
        if (only) expect(only.bytes.length).toBe(b.length);
      }),
      { runs: 3000 },
    );
  });

  it('reads back every tag-length-value it writes, with minimal lengths', () => {
    fuzz(
      fc.property(tag, fc.uint8Array({ maxLength: 70_000 }), (t, v) => {
        const enc = tlv(t, v);
        const r = readOnly(enc, t);
        expect(Buffer.from(r.value).equals(Buffer.from(v))).toBe(true);
      }),
      { runs: 300 },
    );
  });

  it('walks a whole DER tree back into the same children', () => {
    fuzz(
      fc.property(fc.array(derTree, { maxLength: 6 }), (kids) => {
        const parent = readOnly(seq(...kids), 0x30);
        expect(children(parent.value).map((k) => Buffer.from(k.bytes))).toEqual(kids);
      }),
      { runs: 500 },
    );
  });

  it('decodeOid reads back every OID oid() writes, and throws only DerError on any other bytes', () => {
    fuzz(
      fc.property(dottedOid, fc.uint8Array({ maxLength: 40 }), (d, junk) => {
        expect(decodeOid(readOnly(oid(d), 0x06).value)).toBe(d);
        const r = onlyThrows(() => decodeOid(junk), DerError);
        if (r !== undefined) expect(r).toMatch(/^\d+(\.\d+)+$/);
      }),
      { runs: 1000 },
    );
  });

  it('decodeTime reads back every time() it writes, to the second', () => {
    fuzz(
      fc.property(isoDate(true), (d) => {
        const t = time(d);
        expect(decodeTime(t[0]!, t.subarray(2)).toISOString()).toBe(d.toISOString());
      }),
      { runs: 1000 },
    );
  });

  it('decodeTime throws only DerError and never returns an invalid date', () => {
    fuzz(
      fc.property(
        fc.constantFrom(0x17, 0x18, 0x04),
        fc.oneof(fc.stringMatching(/^\d{12,14}Z$/), fc.string({ unit: 'binary-ascii', maxLength: 20 })),
        (t, s) => {
          const d = onlyThrows(() => decodeTime(t, Buffer.from(s, 'latin1')), DerError);
          if (d) expect(Number.isNaN(d.getTime())).toBe(false);
        },
      ),
      { runs: 1000 },
    );
  });

  it('uintBytes writes the magnitude as a positive minimal INTEGER', () => {
    fuzz(
      fc.property(fc.uint8Array({ maxLength: 40 }), (m) => {
        const v = Buffer.from(readOnly(uintBytes(m), 0x02).value);
        expect(v.length).toBeGreaterThan(0);
        expect(v[0]! & 0x80).toBe(0);
        if (v.length > 1) expect(v[0] !== 0 || (v[1]! & 0x80) !== 0).toBe(true);
        const hex = (b: Uint8Array) => BigInt(`0x0${Buffer.from(b).toString('hex')}`);
        expect(hex(v)).toBe(hex(m));
      }),
      { runs: 1000 },
    );
  });

  it('pemToDer gives back what derToPem wraps, and throws only DerError on any other text', () => {
    fuzz(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.stringMatching(/^[A-Z0-9][A-Z0-9 ]{0,20}[A-Z0-9]$/),
        fc.string({ maxLength: 200 }),
        (der, label, junk) => {
          expect(pemToDer(derToPem(der, label), label).equals(Buffer.from(der))).toBe(true);
          onlyThrows(() => pemToDer(junk), DerError);
          onlyThrows(
            () => pemToDer(`-----BEGIN ${label}-----\n${junk}\n-----END ${label}-----`, 'X'),
            DerError,
          );
        },
      ),
      { runs: 500 },
    );
  });
});
