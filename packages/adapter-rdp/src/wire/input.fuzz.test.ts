import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  clientFrame,
  decodeFastPathInput,
  decodeSlowPathInput,
  encodeFastPathInput,
  encodeSlowPathInput,
  type InputEvent,
} from './input.js';
import { RdpWireError } from './tpkt.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const i16 = fc.integer({ min: -0x8000, max: 0x7fff });
const event: fc.Arbitrary<InputEvent> = fc.oneof(
  fc.record({
    type: fc.constant('scancode' as const),
    code: fc.integer({ min: 0, max: 255 }),
    release: fc.boolean(),
    extended: fc.boolean(),
  }),
  fc.record({ type: fc.constant('unicode' as const), code: u16, release: fc.boolean() }),
  fc.record({ type: fc.constantFrom('mouse' as const, 'mousex' as const), flags: u16, x: u16, y: u16 }),
  fc.record({ type: fc.constant('relative' as const), flags: u16, dx: i16, dy: i16 }),
);

describe('client input PDUs (fuzz)', () => {
  it('fast-path and slow-path input round-trip', () => {
    fuzz(
      fc.property(fc.array(event, { maxLength: 40 }), (evs) => {
        expect(decodeFastPathInput(encodeFastPathInput(evs))).toEqual(evs);
        expect(decodeSlowPathInput(encodeSlowPathInput(evs))).toEqual(evs);
      }),
      { runs: 1500 },
    );
  });

  it('damaged PDUs throw only RdpWireError and never yield more events than bytes allow', () => {
    const pdus = fc
      .array(event, { minLength: 1, maxLength: 12 })
      .chain((evs) =>
        fc.oneof(
          hostileBytes(fc.constant(encodeFastPathInput(evs))),
          hostileBytes(fc.constant(encodeSlowPathInput(evs))),
        ),
      );
    fuzz(
      fc.property(fc.oneof(pdus, fc.uint8Array({ maxLength: 80 })), (b) => {
        const fast = onlyThrows(() => decodeFastPathInput(b), RdpWireError);
        if (fast) expect(fast.length).toBeLessThanOrEqual(Math.max(b.length, 256));
        const slow = onlyThrows(() => decodeSlowPathInput(b), RdpWireError);
        if (slow) expect(slow.length * 12).toBeLessThanOrEqual(b.length);
        for (const beforeMcs of [true, false]) {
          const f = onlyThrows(() => clientFrame(b, beforeMcs), RdpWireError);
          if (f) expect(f.length).toBeLessThanOrEqual(b.length);
        }
      }),
      { runs: 4000 },
    );
  });
});
