import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { PgWireError } from './errors.js';
import {
  CANCEL_REQUEST_CODE,
  decodeFrontendMessage,
  F,
  type FrontendMessage,
  GSSENC_REQUEST_CODE,
  MAX_STARTUP_BYTES,
  readStartupPacket,
  SSL_REQUEST_CODE,
  type StartupPacket,
} from './frontend.js';

// ---------------------------------------------------------------- an independent encoder

const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const cstr = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);

/** Text without NUL (it ends a C string on the wire). */
const str = fc.string({ unit: 'grapheme', maxLength: 24 }).filter((s) => !s.includes('\0'));
const nonEmpty = str.filter((s) => s.length > 0);

function startupBytes(p: StartupPacket): Buffer {
  let body: Buffer;
  if (p.type === 'cancel') body = Buffer.concat([i32(CANCEL_REQUEST_CODE), i32(p.pid), i32(p.secret)]);
  else if (p.type === 'ssl-request') body = i32(SSL_REQUEST_CODE);
  else if (p.type === 'gssenc-request') body = i32(GSSENC_REQUEST_CODE);
  else {
    const kv = [...p.params].flatMap(([k, v]) => [cstr(k), cstr(v)]);
    body = Buffer.concat([u32(p.major * 65536 + p.minor), ...kv, Buffer.from([0])]);
  }
  return Buffer.concat([i32(body.length + 4), body]);
}

const startupPacket: fc.Arbitrary<StartupPacket> = fc.oneof(
  fc
    .record({
      minor: fc.integer({ min: 0, max: 0xffff }),
      params: fc.uniqueArray(fc.tuple(nonEmpty, str), { selector: ([k]) => k, maxLength: 6 }),
    })
    .map(({ minor, params }) => ({ type: 'startup' as const, major: 3, minor, params: new Map(params) })),
  fc
    .record({
      pid: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      secret: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    })
    .map(({ pid, secret }) => ({ type: 'cancel' as const, pid, secret })),
  fc.constantFrom({ type: 'ssl-request' as const }, { type: 'gssenc-request' as const }),
);

type Param = { format: 'text' | 'binary'; value: Buffer } | null;

function paramsBytes(params: Param[], formatStyle: 'none' | 'one' | 'each'): Buffer {
  const fmt = (p: Param) => (p?.format === 'binary' ? 1 : 0);
  const formats =
    formatStyle === 'none'
      ? []
      : formatStyle === 'one'
        ? [fmt(params.find((p) => p) ?? null)]
        : params.map(fmt);
  const values = params.map((p) => (p === null ? i32(-1) : Buffer.concat([i32(p.value.length), p.value])));
  return Buffer.concat([i16(formats.length), ...formats.map(i16), i16(params.length), ...values]);
}

/** Audited messages with how they go on the wire (bind and function-call: every format-code style). */
const frontendMessage: fc.Arbitrary<{ type: number; body: Buffer; msg: FrontendMessage }> = fc.oneof(
  str.map((sql) => ({ type: F.Query, body: cstr(sql), msg: { type: 'query' as const, sql } })),
  fc
    .tuple(str, str, fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 5 }))
    .map(([statement, sql, paramTypes]) => ({
      type: F.Parse,
      body: Buffer.concat([cstr(statement), cstr(sql), i16(paramTypes.length), ...paramTypes.map(u32)]),
      msg: { type: 'parse' as const, statement, sql, paramTypes },
    })),
  fc
    .tuple(
      str,
      str,
      fc.constantFrom('none' as const, 'one' as const, 'each' as const),
      fc.boolean(),
      fc.array(fc.option(fc.uint8Array({ maxLength: 20 })), { maxLength: 5 }),
      fc.array(fc.constantFrom(0, 1), { maxLength: 3 }),
    )
    .map(([portal, statement, style, binary, values, resultFormats]) => {
      // With one format code (or none) every non-null parameter has the same format.
      const params: Param[] = values.map((v, i) =>
        v === null
          ? null
          : {
              format: (style === 'each' ? (i + (binary ? 1 : 0)) % 2 === 1 : style === 'one' && binary)
                ? 'binary'
                : 'text',
              value: Buffer.from(v),
            },
      );
      const body = Buffer.concat([
        cstr(portal),
        cstr(statement),
        paramsBytes(params, style),
        i16(resultFormats.length),
        ...resultFormats.map(i16),
      ]);
      return { type: F.Bind, body, msg: { type: 'bind' as const, portal, statement, params } };
    }),
  fc.tuple(str, fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 })).map(([portal, maxRows]) => ({
    type: F.Execute,
    body: Buffer.concat([cstr(portal), i32(maxRows)]),
    msg: { type: 'execute' as const, portal, maxRows },
  })),
  fc.tuple(fc.constantFrom('statement' as const, 'portal' as const), str).map(([target, name]) => ({
    type: F.Close,
    body: Buffer.concat([Buffer.from(target === 'statement' ? 'S' : 'P'), cstr(name)]),
    msg: { type: 'close' as const, target, name },
  })),
  fc
    .tuple(
      fc.nat({ max: 0xffffffff }),
      fc.constantFrom('none' as const, 'each' as const),
      fc.array(fc.option(fc.uint8Array({ maxLength: 20 })), { maxLength: 4 }),
      fc.constantFrom(0, 1),
    )
    .map(([oid, style, values, resultFormat]) => {
      const args: Param[] = values.map((v) =>
        v === null ? null : { format: 'text', value: Buffer.from(v) },
      );
      return {
        type: F.FunctionCall,
        body: Buffer.concat([u32(oid), paramsBytes(args, style), i16(resultFormat)]),
        msg: { type: 'function-call' as const, oid, args },
      };
    }),
);

describe('PostgreSQL startup packet (fuzz)', () => {
  it('reads back every startup, cancel and encryption request, whatever follows it', () => {
    fuzz(
      fc.property(startupPacket, fc.uint8Array({ maxLength: 16 }), (p, more) => {
        const bytes = startupBytes(p);
        const r = readStartupPacket(Buffer.concat([bytes, more]));
        expect(r).toEqual({ packet: p, length: bytes.length });
      }),
      { runs: 1000 },
    );
  });

  it('waits for more bytes on every truncated packet', () => {
    fuzz(
      fc.property(startupPacket, fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (p, f) => {
        const bytes = startupBytes(p);
        expect(readStartupPacket(bytes.subarray(0, Math.floor(f * bytes.length)))).toBeUndefined();
      }),
      { runs: 1000 },
    );
  });

  it('reads what pg (node-postgres) sends', () => {
    fuzz(
      fc.property(
        fc.uniqueArray(
          fc.tuple(
            nonEmpty.filter((k) => k !== 'client_encoding'),
            str,
          ),
          { selector: ([k]) => k, maxLength: 5 },
        ),
        (params) => {
          const r = readStartupPacket(serialize.startup(Object.fromEntries(params)));
          expect(r?.packet).toEqual({
            type: 'startup',
            major: 3,
            minor: 0,
            params: new Map([...params, ['client_encoding', 'UTF8']]),
          });
        },
      ),
      { runs: 300 },
    );
  });

  it('throws only PgWireError on damaged packets, and what it reads lies within the bytes and the limit', () => {
    fuzz(
      fc.property(hostileBytes(startupPacket.map(startupBytes)), (b) => {
        const r = onlyThrows(() => readStartupPacket(b), PgWireError);
        if (!r) return;
        expect(r.length).toBeLessThanOrEqual(b.length);
        expect(r.length).toBeLessThanOrEqual(MAX_STARTUP_BYTES);
      }),
      { runs: 3000 },
    );
  });

  it(`refuses a declared length over ${MAX_STARTUP_BYTES} bytes as soon as the length arrives`, () => {
    fuzz(
      fc.property(fc.integer({ min: MAX_STARTUP_BYTES + 1, max: 2 ** 31 - 1 }), (len) => {
        expect(() => readStartupPacket(i32(len))).toThrow(
          expect.objectContaining({ name: 'PgWireError', reason: 'oversized' }),
        );
      }),
      { runs: 300 },
    );
  });
});

describe('PostgreSQL frontend messages (fuzz)', () => {
  it('decodes every audited message back to what was encoded', () => {
    fuzz(
      fc.property(frontendMessage, ({ type, body, msg }) => {
        expect(decodeFrontendMessage(type, body)).toEqual(msg);
      }),
      { runs: 2000 },
    );
  });

  it('decodes what pg (node-postgres) sends', () => {
    fuzz(
      fc.property(
        str,
        str,
        fc.array(
          fc.oneof(
            str,
            fc.constant(null),
            fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
          ),
          { maxLength: 4 },
        ),
        fc.array(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { maxLength: 3 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        (name, sql, values, types, rows) => {
          const body = (raw: Buffer) => raw.subarray(5);
          expect(decodeFrontendMessage(F.Query, body(serialize.query(sql)))).toEqual({ type: 'query', sql });
          expect(decodeFrontendMessage(F.Parse, body(serialize.parse({ name, text: sql, types })))).toEqual({
            type: 'parse',
            statement: name,
            sql,
            paramTypes: types,
          });
          expect(
            decodeFrontendMessage(F.Bind, body(serialize.bind({ portal: name, statement: name, values }))),
          ).toEqual({
            type: 'bind',
            portal: name,
            statement: name,
            params: values.map((v) =>
              v === null
                ? null
                : typeof v === 'string'
                  ? { format: 'text', value: Buffer.from(v) }
                  : { format: 'binary', value: v },
            ),
          });
          expect(decodeFrontendMessage(F.Execute, body(serialize.execute({ portal: name, rows })))).toEqual({
            type: 'execute',
            portal: name,
            maxRows: rows,
          });
          expect(decodeFrontendMessage(F.Close, body(serialize.close({ type: 'S', name })))).toEqual({
            type: 'close',
            target: 'statement',
            name,
          });
        },
      ),
      { runs: 500 },
    );
  });

  it('throws only PgWireError on damaged bodies, for every type', () => {
    fuzz(
      fc.property(
        frontendMessage.chain(({ type, body }) => hostileBytes(fc.constant(body)).map((b) => ({ type, b }))),
        fc.constantFrom(...Object.values(F)),
        ({ type, b }, otherType) => {
          onlyThrows(() => decodeFrontendMessage(type, b), PgWireError);
          onlyThrows(() => decodeFrontendMessage(otherType, b), PgWireError);
        },
      ),
      { runs: 3000 },
    );
  });
});
