import {
  bytewise,
  chunks,
  cutsArb,
  fuzz,
  type Generated,
  hostileBytes,
  onlyThrows,
} from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeWsFrame, type WsFrame, WsFrameParser, WsProtocolError } from './websocket.js';

const mask = fc.option(fc.uint8Array({ minLength: 4, maxLength: 4 }), { nil: undefined });
/** Data frames of every length form (7-bit, 16-bit, 64-bit), and control frames. */
const frame = fc.oneof(
  fc.record({
    opcode: fc.constantFrom(0, 1, 2),
    fin: fc.boolean(),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: 126, max: 70_000 }).map((n) => new Uint8Array(n).fill(n & 0xff)),
    ),
    mask,
  }),
  fc.record({
    opcode: fc.constantFrom(8, 9, 10),
    fin: fc.constant(true),
    payload: fc.uint8Array({ maxLength: 125 }),
    mask,
  }),
);

/** Frames up to and including the first close: nothing after a close is read. */
const frames = fc.array(frame, { maxLength: 8 }).map((fs) => {
  const close = fs.findIndex((f) => f.opcode === 8);
  return close < 0 ? fs : fs.slice(0, close + 1);
});

const encode = (fs: Generated<typeof frame>[]) =>
  Buffer.concat(
    fs.map((f) => encodeWsFrame(f.opcode, f.payload, { fin: f.fin, ...(f.mask ? { mask: f.mask } : {}) })),
  );
/** Frames compared by header fields and payload bytes (deep equality of large buffers is slow). */
function expectFrames(got: WsFrame[], fs: Generated<typeof frame>[]): void {
  expect(got.map((f) => [f.fin, f.opcode, f.payload.length])).toEqual(
    fs.map((f) => [f.fin, f.opcode, f.payload.length]),
  );
  for (const [i, f] of got.entries()) expect(f.payload.equals(fs[i]!.payload)).toBe(true);
}

describe('WebSocket frames (fuzz)', () => {
  it('reads back every frame, masked or not, however the stream is split', () => {
    fuzz(
      fc.property(frames, cutsArb, fc.uint8Array({ maxLength: 20 }), (fs, cuts, afterClose) => {
        const bytes = Buffer.concat([encode(fs), fs.at(-1)?.opcode === 8 ? afterClose : new Uint8Array()]);
        const p = new WsFrameParser();
        expectFrames(
          chunks(bytes, cuts).flatMap((c) => p.push(c)),
          fs,
        );
      }),
      { runs: 500 },
    );
  });

  it('gives the same frames one byte at a time', () => {
    fuzz(
      fc.property(
        frames.map((fs) => fs.filter((f) => f.payload.length < 300)),
        (fs) => {
          const p = new WsFrameParser();
          expectFrames(
            bytewise(encode(fs)).flatMap((c) => p.push(c)),
            fs,
          );
        },
      ),
      { runs: 200 },
    );
  });

  it('refuses a frame over the limit as soon as its length arrives, whatever the length form', () => {
    fuzz(
      fc.property(
        fc.integer({ min: 0, max: 70_000 }),
        fc.integer({ min: 0, max: 70_000 }),
        fc.boolean(),
        (limit, len, masked) => {
          fc.pre(len > limit);
          const head = encodeWsFrame(
            2,
            new Uint8Array(len),
            masked ? { mask: new Uint8Array(4) } : {},
          ).subarray(0, len < 126 ? 2 : len < 65536 ? 4 : 10);
          expect(() => new WsFrameParser({ maxPayload: limit }).push(head)).toThrow(/exceeds the limit/);
        },
      ),
      { runs: 500 },
    );
  });

  it('throws only WsProtocolError on damaged streams', () => {
    fuzz(
      fc.property(
        hostileBytes(frames.map((fs) => encode(fs.filter((f) => f.payload.length < 300)))),
        cutsArb,
        (bytes, cuts) => {
          const p = new WsFrameParser({ maxPayload: 1 << 16 });
          onlyThrows(() => chunks(bytes, cuts).flatMap((c) => p.push(c)), WsProtocolError);
        },
      ),
      { runs: 3000 },
    );
  });
});
