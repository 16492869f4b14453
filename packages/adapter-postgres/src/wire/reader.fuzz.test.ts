import { bytewise, chunks, cutsArb, fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PgWireError } from './errors.js';
import { F, isAuditedFrontendType, isKnownFrontendType } from './frontend.js';
import { MessageReader, type Segment } from './reader.js';

const frame = (type: number, body: Uint8Array) => {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
};

/** A client's stream after startup: audited messages (read whole) mixed with passthrough ones (COPY data, Sync...). */
const frontStream = fc
  .array(fc.tuple(fc.constantFrom(...Object.values(F)), fc.uint8Array({ maxLength: 300 })), { maxLength: 12 })
  .map((msgs) => ({ msgs, bytes: Buffer.concat(msgs.map(([t, b]) => frame(t, b))) }));

const frontReader = (maxMessageBytes?: number) =>
  new MessageReader({
    inspect: isAuditedFrontendType,
    accept: isKnownFrontendType,
    peer: 'the client',
    ...(maxMessageBytes === undefined ? {} : { maxMessageBytes }),
  });

function feed(r: MessageReader, pieces: Buffer[]): Segment[] {
  return pieces.flatMap((p) => r.push(p));
}

const rawOf = (segs: Segment[]) =>
  Buffer.concat(
    segs.map((s) =>
      s.kind === 'raw' || s.kind === 'body' ? s.bytes : s.kind === 'begin' ? s.header : s.raw,
    ),
  );

/** The inspected messages, whole or streamed (`begin` then `body` pieces), as type and body. */
function messagesOf(segs: Segment[]): { type: number; body: Buffer }[] {
  const out: { type: number; body: Buffer }[] = [];
  let streaming: { type: number; parts: Buffer[] } | undefined;
  for (const s of segs) {
    if (s.kind === 'message') out.push({ type: s.type, body: Buffer.from(s.body) });
    else if (s.kind === 'begin') streaming = { type: s.type, parts: [] };
    else if (s.kind === 'body' && streaming) {
      streaming.parts.push(s.bytes);
      if (s.end) {
        out.push({ type: streaming.type, body: Buffer.concat(streaming.parts) });
        streaming = undefined;
      }
    }
  }
  return out;
}

describe('PostgreSQL MessageReader (fuzz)', () => {
  it('hands out the same messages, and gives back every byte in order, however the stream is split', () => {
    fuzz(
      fc.property(frontStream, cutsArb, ({ msgs, bytes }, cuts) => {
        const whole = feed(frontReader(), [bytes]);
        const split = frontReader();
        const pieces = feed(split, chunks(bytes, cuts));
        const expected = msgs
          .filter(([t]) => isAuditedFrontendType(t))
          .map(([type, b]) => ({ type, body: Buffer.from(b) }));
        expect(messagesOf(whole)).toEqual(expected);
        expect(messagesOf(pieces)).toEqual(expected);
        expect(rawOf(whole)).toEqual(bytes);
        expect(rawOf(pieces)).toEqual(bytes);
        expect(split.atBoundary).toBe(true);
      }),
      { runs: 1000 },
    );
  });

  it('gives the same result one byte at a time', () => {
    fuzz(
      fc.property(frontStream, ({ bytes }) => {
        const r = frontReader();
        const segs = feed(r, bytewise(bytes));
        expect(messagesOf(segs)).toEqual(messagesOf(feed(frontReader(), [bytes])));
        expect(rawOf(segs)).toEqual(bytes);
        expect(r.atBoundary).toBe(true);
      }),
      { runs: 200 },
    );
  });

  it('throws only PgWireError on damaged streams, in both directions', () => {
    fuzz(
      fc.property(hostileBytes(frontStream.map((s) => s.bytes)), cutsArb, (bytes, cuts) => {
        onlyThrows(() => feed(frontReader(1024), chunks(bytes, cuts)), PgWireError);
        const back = new MessageReader({
          inspect: (t) => t === 0x5a,
          peer: 'the database',
          maxMessageBytes: 1024,
        });
        onlyThrows(() => feed(back, chunks(bytes, cuts)), PgWireError);
      }),
      { runs: 2000 },
    );
  });

  it('refuses a declared length over the limit as soon as the header arrives, and lengths under 4', () => {
    fuzz(
      fc.property(
        fc.constantFrom(...Object.values(F)),
        fc.integer({ min: 4, max: 1 << 20 }),
        fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        (type, max, len) => {
          const h = Buffer.alloc(5);
          h[0] = type;
          h.writeInt32BE(len, 1);
          const r = frontReader(max);
          if (len >= 4 && len <= max) {
            expect(r.push(h).length).toBeLessThanOrEqual(1);
            return;
          }
          expect(() => r.push(h)).toThrow(
            expect.objectContaining({ name: 'PgWireError', reason: len < 4 ? 'malformed' : 'oversized' }),
          );
        },
      ),
      { runs: 1000 },
    );
  });
});
