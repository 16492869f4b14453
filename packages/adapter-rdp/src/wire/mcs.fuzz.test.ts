import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { serverSelectedProtocolOffset, withServerSelectedProtocol } from './mcs.js';
import { connectInitial, csCore } from './testing.js';
import { RdpWireError } from './tpkt.js';

const frames = fc
  .record({
    coreLength: fc.integer({ min: 12, max: 400 }),
    selected: fc.nat(),
    others: fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { maxLength: 3 }),
  })
  .map(({ coreLength, selected, others }) =>
    connectInitial([
      ...others.map((o) => {
        const b = Buffer.alloc(4 + o.length);
        b.writeUInt16LE(0xc004, 0);
        b.writeUInt16LE(b.length, 2);
        b.set(o, 4);
        return b;
      }),
      csCore(coreLength, selected),
    ]),
  );

describe('MCS Connect Initial patch (fuzz)', () => {
  it('on well-formed frames changes exactly the field, when present', () => {
    fuzz(
      fc.property(frames, fc.nat(), (frame, p) => {
        const out = withServerSelectedProtocol(frame, p);
        expect(out.length).toBe(frame.length);
        const at = serverSelectedProtocolOffset(frame);
        if (at !== undefined) expect(out.readUInt32LE(at)).toBe(p);
        for (let i = 0; i < frame.length; i++)
          if (at === undefined || i < at || i >= at + 4) expect(out[i]).toBe(frame[i]);
      }),
    );
  });

  it('hostile bytes only raise RdpWireError, and a patch never changes the length', () => {
    fuzz(
      fc.property(hostileBytes(frames), (bytes) => {
        const out = onlyThrows(() => withServerSelectedProtocol(bytes, 2), RdpWireError);
        if (out) expect(out.length).toBe(bytes.length);
      }),
    );
  });
});
