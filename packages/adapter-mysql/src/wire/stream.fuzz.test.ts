import { type AuditText, TextDigest } from '@gatehouse/audit';
import { bytewise, chunks, cutsArb, fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CommandReader, type CommandSegment, encodePacket, lenencBytes, MysqlWireError } from './codec.js';
import { COM, MAX_FRAME_PAYLOAD, TYPE } from './constants.js';
import { inspectQuery, QueryInspector } from './sql.js';
import { CommandStream, decodeStreamed, type StatementLookup } from './stream.js';

const limits = fc.record({ maxQueryBytes: fc.nat(64), maxParameterBytes: fc.nat(16) });

/** Statement 7 takes (VAR_STRING, LONG, BLOB); its BLOB may come as long data. */
function lookup(): StatementLookup & { digest: TextDigest } {
  const digest = new TextDigest(8);
  return {
    digest,
    execute: (id) =>
      id === 7
        ? { numParams: 3, types: undefined, longData: new Map<number, AuditText>([[2, 'long']]) }
        : undefined,
    longData: (id, param) => (id === 7 && param === 2 ? digest : undefined),
  };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const sqlText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc
    .array(
      fc.constantFrom(
        'SELECT 1',
        "'a;b'",
        'USE `x`',
        'use y',
        '/*! LOAD DATA LOCAL INFILE */',
        '-- c\n',
        ';',
        ' ',
        '€',
        "'it''s'",
        '"q\\"',
      ),
      {
        maxLength: 10,
      },
    )
    .map((p) => p.join('')),
);

/** Command payloads (command byte first) of the kinds that stream. */
const command = fc.oneof(
  sqlText.map((s) => Buffer.concat([Buffer.from([COM.QUERY]), Buffer.from(s)])),
  sqlText.map((s) => Buffer.concat([Buffer.from([COM.STMT_PREPARE]), Buffer.from(s)])),
  fc
    .tuple(
      fc.constantFrom(7, 8),
      fc.string({ maxLength: 40 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.boolean(),
    )
    .map(([id, text, n, bind]) =>
      Buffer.concat([
        Buffer.from([COM.STMT_EXECUTE]),
        u32(id),
        Buffer.from([0]),
        u32(1),
        Buffer.from([0]),
        Buffer.from(bind ? [1, TYPE.VAR_STRING, 0, TYPE.LONG, 0, TYPE.BLOB, 0] : [0]),
        lenencBytes(Buffer.from(text)),
        u32(n),
      ]),
    ),
  fc
    .tuple(fc.constantFrom(7, 9), fc.nat(3), fc.uint8Array({ maxLength: 40 }))
    .map(([id, param, data]) =>
      Buffer.concat([
        Buffer.from([COM.STMT_SEND_LONG_DATA]),
        u32(id),
        Buffer.from([param, 0]),
        Buffer.from(data),
      ]),
    ),
);

/** What decoding gives: the result, or the codec's error (anything else escapes and fails the test). */
function outcome(run: () => unknown): unknown {
  try {
    return { ok: run() };
  } catch (e) {
    if (!(e instanceof MysqlWireError)) throw e;
    return { error: e.reason };
  }
}

function streamed(pieces: Buffer[], l: { maxQueryBytes: number; maxParameterBytes: number }) {
  const st = lookup();
  const got = outcome(() => {
    const s = new CommandStream(l, st, 64);
    for (const p of pieces) s.push(p);
    return s.end();
  });
  return { got, longData: st.digest.result() };
}

describe('MySQL streamed commands (fuzz)', () => {
  it('CommandStream decodes a command the same however it arrives, as decodeStreamed does whole', () => {
    fuzz(
      fc.property(command, cutsArb, limits, fc.boolean(), (payload, cuts, l, oneByOne) => {
        const st = lookup();
        const whole = outcome(() => decodeStreamed(payload, l, st, 64));
        const pieces = streamed(oneByOne ? bytewise(payload) : chunks(payload, cuts), l);
        expect(pieces.got).toEqual(whole);
        expect(pieces.longData).toEqual(st.digest.result());
      }),
      { runs: 1000 },
    );
  });

  it('CommandStream throws only MysqlWireError on damaged commands, and chunking never changes the outcome', () => {
    fuzz(
      fc.property(hostileBytes(command), cutsArb, limits, (payload, cuts, l) => {
        expect(streamed(chunks(payload, cuts), l).got).toEqual(streamed([payload], l).got);
      }),
      { runs: 2000 },
    );
  });

  it('QueryInspector gives the same checks for a text in any pieces of bytes as inspectQuery for it whole', () => {
    fuzz(
      fc.property(sqlText, cutsArb, (sql, cuts) => {
        const q = new QueryInspector();
        for (const p of chunks(Buffer.from(sql), cuts)) q.pushBytes(p);
        const got = q.end();
        const whole = inspectQuery(sql);
        expect(got.useDatabases).toEqual(whole.useDatabases);
        expect(got.loadDataLocal).toBe(whole.loadDataLocal);
        expect(got.unchecked).toEqual(whole.unchecked);
      }),
      { runs: 2000 },
    );
  });
});

/** Reassembles what CommandReader hands out: whole packets, and streamed ones from their parts. */
function reassemble(segs: CommandSegment[]): { raw: Buffer; payloads: Buffer[] } {
  const payloads: Buffer[] = [];
  let cur: Buffer[] | undefined;
  for (const s of segs) {
    if (s.kind === 'packet') payloads.push(Buffer.from(s.packet.payload));
    else {
      if (s.first) cur = [];
      cur?.push(s.payload);
      if (s.end && cur) {
        payloads.push(Buffer.concat(cur));
        cur = undefined;
      }
    }
  }
  const raw = Buffer.concat(segs.map((s) => (s.kind === 'packet' ? s.packet.raw : s.raw)));
  return { raw, payloads };
}

describe('MySQL CommandReader (fuzz)', () => {
  it('hands out every packet, whole or in parts, and every byte in order, however the stream is split', () => {
    fuzz(
      fc.property(
        fc.array(
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
          { maxLength: 8 },
        ),
        fc.nat(100),
        cutsArb,
        (payloads, maxBuffered, cuts) => {
          const stream = Buffer.concat(payloads.map((p, i) => encodePacket(i, p)));
          const reader = new CommandReader({ maxPacketBytes: 1 << 20, maxBufferedBytes: maxBuffered });
          const got = reassemble(chunks(stream, cuts).flatMap((c) => reader.push(c)));
          expect(got.raw).toEqual(stream);
          expect(got.payloads).toEqual(payloads);
        },
      ),
      { runs: 1000 },
    );
  });

  it('streams a packet continued over 16 MiB frames in parts that add up to it', () => {
    fuzz(
      fc.property(fc.constantFrom(MAX_FRAME_PAYLOAD, MAX_FRAME_PAYLOAD + 5), cutsArb, (len, cuts) => {
        const payload = Buffer.alloc(len, 3);
        const stream = encodePacket(0, payload);
        const reader = new CommandReader({ maxPacketBytes: 1 << 26, maxBufferedBytes: 1 << 20 });
        const got = reassemble(chunks(stream, cuts).flatMap((c) => reader.push(c)));
        expect(got.payloads).toHaveLength(1);
        expect(got.payloads[0]!.equals(payload)).toBe(true);
        expect(got.raw.equals(stream)).toBe(true);
      }),
      { runs: 4, maxRuns: 20 },
    );
  });

  it('throws only MysqlWireError on damaged streams, and refuses a declared size over the limit as the header arrives', () => {
    fuzz(
      fc.property(
        hostileBytes(
          fc
            .array(fc.uint8Array({ maxLength: 60 }), { maxLength: 5 })
            .map((ps) => Buffer.concat(ps.map((p, i) => encodePacket(i, Buffer.from(p))))),
        ),
        cutsArb,
        fc.integer({ min: 1, max: 64 }),
        (stream, cuts, max) => {
          const reader = new CommandReader({ maxPacketBytes: max, maxBufferedBytes: 8 });
          onlyThrows(() => chunks(stream, cuts).flatMap((c) => reader.push(c)), MysqlWireError);
          const head = Buffer.from([max + 1, 0, 0, 0]);
          expect(() => new CommandReader({ maxPacketBytes: max, maxBufferedBytes: 8 }).push(head)).toThrow(
            MysqlWireError,
          );
        },
      ),
      { runs: 2000 },
    );
  });
});
