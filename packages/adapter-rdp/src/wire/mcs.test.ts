import { describe, expect, it } from 'vitest';
import { isConnectInitial, serverSelectedProtocolOffset, withServerSelectedProtocol } from './mcs.js';
import { connectInitial, csCore } from './testing.js';
import { encodeTpkt, RdpWireError } from './tpkt.js';

const csSecurity = () => {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(0xc002, 0);
  b.writeUInt16LE(12, 2);
  return b;
};

describe('MCS Connect Initial: serverSelectedProtocol', () => {
  it('is set in the client core data, nothing else changes', () => {
    const frame = connectInitial([csCore(234, 1), csSecurity()]);
    expect(isConnectInitial(frame)).toBe(true);
    const out = withServerSelectedProtocol(frame, 2);
    const at = serverSelectedProtocolOffset(frame)!;
    expect(out.readUInt32LE(at)).toBe(2);
    expect(frame.readUInt32LE(at)).toBe(1);
    const diff = [...out].flatMap((b, i) => (b === frame[i] ? [] : [i]));
    expect(diff).toEqual([at]);
  });

  it('finds the core block after other blocks, and leaves a core block too short to have the field', () => {
    const later = connectInitial([csSecurity(), csCore(216, 1)]);
    expect(withServerSelectedProtocol(later, 2).readUInt32LE(serverSelectedProtocolOffset(later)!)).toBe(2);
    const short = connectInitial([csCore(212, 0)]);
    expect(serverSelectedProtocolOffset(short)).toBeUndefined();
    expect(withServerSelectedProtocol(short, 2).equals(short)).toBe(true);
  });

  it('refuses what is not a Connect Initial, truncations, and block lengths that overrun', () => {
    expect(() =>
      serverSelectedProtocolOffset(encodeTpkt(Buffer.from([0x02, 0xf0, 0x80, 0x64, 0, 0]))),
    ).toThrow(RdpWireError);
    const frame = connectInitial([csCore(234, 1)]);
    expect(() => serverSelectedProtocolOffset(frame.subarray(0, frame.length - 1))).toThrow(RdpWireError);
    const bad = Buffer.from(frame);
    // The core block claims more bytes than there are.
    const at = serverSelectedProtocolOffset(frame)! - 212;
    bad.writeUInt16LE(0xffff, at + 2);
    expect(() => serverSelectedProtocolOffset(bad)).toThrow(/bad length/);
    expect(() => serverSelectedProtocolOffset(connectInitial([csSecurity()]))).toThrow(
      /without client core data/,
    );
  });
});
