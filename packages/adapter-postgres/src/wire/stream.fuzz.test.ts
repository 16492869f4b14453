import { bytewise, chunks, cutsArb, fuzz, hostileBytes } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { ClientAudit } from '../query-audit.js';
import { PgWireError } from './errors.js';
import { F } from './frontend.js';
import { decodeStreamed, streamDecoder } from './stream.js';

const limits = fc.record({ maxQueryBytes: fc.nat(64), maxParameterBytes: fc.nat(16) });
const str = fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => !s.includes('\0'));
const value = fc.oneof(
  str,
  fc.constant(null),
  fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)),
);
const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};

/** Messages that stream, as pg (node-postgres) writes them; and FunctionCall. */
const message = fc.oneof(
  str.map((sql) => serialize.query(sql)),
  fc
    .tuple(str, str, fc.array(fc.nat(1 << 20), { maxLength: 3 }))
    .map(([name, text, types]) => serialize.parse({ name, text, types })),
  fc
    .tuple(str, str, fc.array(value, { maxLength: 4 }))
    .map(([portal, statement, values]) => serialize.bind({ portal, statement, values })),
  fc
    .tuple(fc.nat(1 << 20), fc.array(fc.uint8Array({ maxLength: 20 }), { maxLength: 3 }))
    .map(([oid, args]) => {
      const body = Buffer.concat([
        Buffer.from([0, 0, 0, 0]).fill(0),
        i16(0),
        i16(args.length),
        ...args.flatMap((a) => {
          const n = Buffer.alloc(4);
          n.writeInt32BE(a.length);
          return [n, Buffer.from(a)];
        }),
        i16(0),
      ]);
      body.writeUInt32BE(oid, 0);
      const h = Buffer.alloc(5);
      h[0] = F.FunctionCall;
      h.writeInt32BE(body.length + 4, 1);
      return Buffer.concat([h, body]);
    }),
);

function outcome(run: () => unknown): unknown {
  try {
    return { ok: run() };
  } catch (e) {
    if (!(e instanceof PgWireError)) throw e;
    return { error: e.reason };
  }
}

const streamedBody = (
  type: number,
  pieces: Buffer[],
  l: { maxQueryBytes: number; maxParameterBytes: number },
) =>
  outcome(() => {
    const p = streamDecoder(type, l, 64);
    for (const piece of pieces) p.push(piece);
    return p.end();
  });

describe('PostgreSQL streamed messages (fuzz)', () => {
  it('streamDecoder decodes a body the same however it arrives, as decodeStreamed does whole', () => {
    fuzz(
      fc.property(message, cutsArb, limits, fc.boolean(), (raw, cuts, l, oneByOne) => {
        const type = raw[0]!;
        const body = raw.subarray(5);
        expect(streamedBody(type, oneByOne ? bytewise(body) : chunks(body, cuts), l)).toEqual(
          outcome(() => decodeStreamed(type, body, l, 64)),
        );
      }),
      { runs: 1000 },
    );
  });

  it('throws only PgWireError on damaged bodies, and chunking never changes the outcome', () => {
    fuzz(
      fc.property(
        message,
        hostileBytes(message.map((m) => m.subarray(5))),
        cutsArb,
        limits,
        (m, body, cuts, l) => {
          const type = m[0]!;
          expect(streamedBody(type, chunks(body, cuts), l)).toEqual(streamedBody(type, [body], l));
        },
      ),
      { runs: 2000 },
    );
  });
});

describe('PostgreSQL ClientAudit (fuzz)', () => {
  const audit = (
    l: { maxQueryBytes: number; maxParameterBytes: number },
    maxBufferedBytes: number,
    pieces: Buffer[],
  ) =>
    outcome(() => {
      const a = new ClientAudit({ limits: l, maxBufferedBytes });
      const out: Buffer[] = [];
      const records: unknown[] = [];
      for (const p of pieces) {
        const r = a.push(p);
        out.push(r.out);
        records.push(...r.records);
      }
      return { out: Buffer.concat(out), records };
    });

  it('passes every byte on in order and makes the same records, however the stream is split and whatever streams', () => {
    fuzz(
      fc.property(
        fc.array(
          fc.oneof(
            message,
            fc.constant(serialize.sync()),
            fc.constant(serialize.execute({ portal: '', rows: 0 })),
          ),
          { maxLength: 6 },
        ),
        cutsArb,
        limits,
        // Over 160: a streamed message holds its names whole up to maxBufferedBytes (and refuses longer ones).
        fc.integer({ min: 161, max: 400 }),
        (msgs, cuts, l, maxBuffered) => {
          const stream = Buffer.concat(msgs);
          const whole = audit(l, 1 << 20, [stream]) as { ok: { out: Buffer; records: unknown[] } };
          expect(whole.ok.out).toEqual(stream);
          expect(audit(l, maxBuffered, chunks(stream, cuts))).toEqual(whole);
        },
      ),
      { runs: 1000 },
    );
  });

  it('throws only PgWireError on damaged streams, streamed or not', () => {
    fuzz(
      fc.property(
        hostileBytes(fc.array(message, { maxLength: 4 }).map((ms) => Buffer.concat(ms))),
        cutsArb,
        limits,
        fc.integer({ min: 6, max: 64 }),
        (stream, cuts, l, maxBuffered) => {
          audit(l, maxBuffered, chunks(stream, cuts));
        },
      ),
      { runs: 2000 },
    );
  });
});
