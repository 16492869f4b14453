import { createHash } from 'node:crypto';
import { type AuditText, DEFAULT_AUDIT_TEXT_LIMITS } from '@gatehouse/audit';
import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lenencBytes, MysqlWireError } from './codec.js';
import { TYPE } from './constants.js';
import { decodeExecuteParams } from './params.js';

/** One bound parameter: its type code (0x100 = unsigned), its wire bytes and how the audit log must show it. */
interface Param {
  type: number;
  wire: Buffer;
  shown: string;
}

const le = (n: number, size: number, signed: boolean) => {
  const b = Buffer.alloc(size);
  if (signed) b.writeIntLE(n, 0, size);
  else b.writeUIntLE(n, 0, size);
  return b;
};
const p2 = (n: number) => String(n).padStart(2, '0');

const intParam = (type: number, size: number) =>
  fc.boolean().chain((unsigned) =>
    fc
      .integer(
        unsigned
          ? { min: 0, max: 2 ** (8 * size) - 1 }
          : { min: -(2 ** (8 * size - 1)), max: 2 ** (8 * size - 1) - 1 },
      )
      .map(
        (n): Param => ({
          type: type | (unsigned ? 0x100 : 0),
          wire: le(n, size, !unsigned),
          shown: String(n),
        }),
      ),
  );

const param: fc.Arbitrary<Param> = fc.oneof(
  intParam(TYPE.TINY, 1),
  intParam(TYPE.SHORT, 2),
  intParam(TYPE.YEAR, 2),
  intParam(TYPE.LONG, 4),
  intParam(TYPE.INT24, 4),
  fc.tuple(fc.boolean(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })).map(([unsigned, v]): Param => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return {
      type: TYPE.LONGLONG | (unsigned ? 0x100 : 0),
      wire: b,
      shown: String(unsigned ? v : BigInt.asIntN(64, v)),
    };
  }),
  fc.float().map((v): Param => {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    return { type: TYPE.FLOAT, wire: b, shown: String(v) };
  }),
  fc.double().map((v): Param => {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    return { type: TYPE.DOUBLE, wire: b, shown: String(v) };
  }),
  fc
    .tuple(
      fc.constantFrom(TYPE.DATE, TYPE.DATETIME, TYPE.TIMESTAMP),
      fc.constantFrom(0, 4, 7, 11),
      fc.integer({ min: 0, max: 9999 }),
      fc.integer({ min: 0, max: 12 }),
      fc.integer({ min: 0, max: 31 }),
      fc.integer({ min: 0, max: 23 }),
      fc.integer({ min: 0, max: 59 }),
      fc.integer({ min: 0, max: 59 }),
      fc.integer({ min: 0, max: 999_999 }),
    )
    .map(([type, len, y, mo, d, h, mi, s, us]): Param => {
      const parts = [Buffer.from([len]), le(y, 2, false), Buffer.from([mo, d, h, mi, s]), le(us, 4, false)];
      const wire = Buffer.concat(parts).subarray(0, 1 + len);
      let shown = len === 0 ? '0000-00-00 00:00:00' : `${String(y).padStart(4, '0')}-${p2(mo)}-${p2(d)}`;
      if (len >= 7) shown += ` ${p2(h)}:${p2(mi)}:${p2(s)}`;
      if (len === 11) shown += `.${String(us).padStart(6, '0')}`;
      return { type, wire, shown };
    }),
  fc
    .tuple(
      fc.constantFrom(0, 8, 12),
      fc.boolean(),
      fc.integer({ min: 0, max: 34 }),
      fc.integer({ min: 0, max: 23 }),
      fc.integer({ min: 0, max: 59 }),
      fc.integer({ min: 0, max: 59 }),
      fc.integer({ min: 0, max: 999_999 }),
    )
    .map(([len, neg, days, h, mi, s, us]): Param => {
      const wire = Buffer.concat([
        Buffer.from([len, neg ? 1 : 0]),
        le(days, 4, false),
        Buffer.from([h, mi, s]),
        le(us, 4, false),
      ]).subarray(0, 1 + len);
      let shown = len === 0 ? '00:00:00' : `${neg ? '-' : ''}${p2(h + days * 24)}:${p2(mi)}:${p2(s)}`;
      if (len === 12) shown += `.${String(us).padStart(6, '0')}`;
      return { type: TYPE.TIME, wire, shown };
    }),
  fc
    .tuple(
      fc.constantFrom(
        TYPE.VAR_STRING,
        TYPE.STRING,
        TYPE.VARCHAR,
        TYPE.BLOB,
        TYPE.JSON,
        TYPE.NEWDECIMAL,
        TYPE.ENUM,
      ),
      // U+FFFD is left out: the renderer takes it for a decoding error and shows such text as hex.
      fc.string({ unit: 'grapheme', maxLength: 300 }).filter((s) => !/[\x00-\x08\x0e-\x1f\uFFFD]/.test(s)),
    )
    .map(([type, s]): Param => ({ type, wire: lenencBytes(Buffer.from(s)), shown: s })),
  fc.constant({ type: TYPE.NULL, wire: Buffer.alloc(0), shown: 'NULL' }),
);

/** COM_STMT_EXECUTE: id, flags, iteration count, NULL bitmap, new-params-bound, types, values. */
function executePayload(ps: (Param | null)[], bindTypes: boolean): Buffer {
  const nulls = Buffer.alloc((ps.length + 7) >> 3);
  ps.forEach((p, i) => {
    if (p === null) nulls[i >> 3]! |= 1 << (i & 7);
  });
  const types = ps.map((p) =>
    Buffer.from([(p?.type ?? TYPE.NULL) & 0xff, (p?.type ?? 0) & 0x100 ? 0x80 : 0]),
  );
  const head = Buffer.from([0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
  return Buffer.concat([
    head,
    ...(ps.length === 0 ? [] : [nulls, Buffer.from([bindTypes ? 1 : 0]), ...(bindTypes ? types : [])]),
    ...ps.map((p) => p?.wire ?? Buffer.alloc(0)),
  ]);
}

const params = fc.array(fc.option(param, { freq: 5 }), { maxLength: 10 });

describe('COM_STMT_EXECUTE parameters (fuzz)', () => {
  it('renders every bound parameter for the audit log, with new or earlier-bound types', () => {
    fuzz(
      fc.property(params, fc.boolean(), (ps, rebind) => {
        const types = ps.map((p) => p?.type ?? TYPE.NULL);
        const first = decodeExecuteParams(executePayload(ps, true), ps.length, undefined);
        expect(first).toEqual({ values: ps.map((p) => p?.shown ?? 'NULL'), types });
        if (rebind) {
          const again = decodeExecuteParams(executePayload(ps, false), ps.length, first.types);
          expect(again.values).toEqual(first.values);
        }
      }),
      { runs: 2000 },
    );
  });

  it('takes long-data parameters from what was sent before, and keeps any bytes as text, hex or a clipped prefix', () => {
    fuzz(
      fc.property(params, fc.uint8Array({ maxLength: 6000 }), (ps, blob) => {
        const all = [...ps, { type: TYPE.BLOB, wire: lenencBytes(Buffer.from(blob)), shown: '' }];
        const longData = new Map<number, AuditText>(
          ps.flatMap((p, i) => (p && i % 2 === 0 ? [[i, `<long data ${i}>`] as [number, AuditText]] : [])),
        );
        const sent = all.map((p, i) => (longData.has(i) && p ? { ...p, wire: Buffer.alloc(0) } : p));
        const { values } = decodeExecuteParams(executePayload(sent, true), all.length, undefined, longData);
        for (const [i, v] of longData) expect(values[i]).toBe(v);
        const last = values[values.length - 1]!;
        const b = Buffer.from(blob);
        if (typeof last !== 'string') {
          // Over the audit's limit: a prefix, the length and the hash of the whole.
          expect(last.length).toBe(b.length);
          expect(last.sha256).toBe(createHash('sha256').update(b).digest('hex'));
          expect(last.text.length).toBeLessThanOrEqual(2 * DEFAULT_AUDIT_TEXT_LIMITS.maxParameterBytes + 2);
        } else if (last.startsWith('0x')) expect(last).toBe(`0x${b.toString('hex')}`);
        else expect(last).toBe(b.toString('utf8'));
      }),
      { runs: 500 },
    );
  });

  it('throws only MysqlWireError on damaged payloads', () => {
    fuzz(
      fc.property(
        hostileBytes(params.map((ps) => executePayload(ps, true))),
        fc.nat(20),
        fc.option(fc.array(fc.constantFrom(...Object.values(TYPE), 0x1ff, 0x42), { maxLength: 20 }), {
          nil: undefined,
        }),
        (p, n, prev) => {
          onlyThrows(() => decodeExecuteParams(p, n, prev, new Map([[1, 'x']])), MysqlWireError);
        },
      ),
      { runs: 3000 },
    );
  });
});
