import { describe, expect, it } from 'vitest';
import {
  clientFrame,
  decodeFastPathInput,
  decodeSlowPathInput,
  encodeFastPathInput,
  encodeSlowPathInput,
  type InputEvent,
  PTRFLAGS,
  PTRXFLAGS,
} from './input.js';
import { RdpWireError } from './tpkt.js';

const events: InputEvent[] = [
  { type: 'scancode', code: 0x1d, release: false, extended: false },
  { type: 'scancode', code: 0x53, release: true, extended: true },
  { type: 'unicode', code: 0x00e9, release: false },
  { type: 'mouse', flags: PTRFLAGS.MOVE, x: 640, y: 480 },
  { type: 'mouse', flags: PTRFLAGS.DOWN | PTRFLAGS.BUTTON1, x: 1, y: 2 },
  { type: 'mouse', flags: PTRFLAGS.WHEEL | PTRFLAGS.WHEEL_NEGATIVE | 0x188, x: 3, y: 4 },
  { type: 'mousex', flags: PTRXFLAGS.DOWN | PTRXFLAGS.BUTTON2, x: 5, y: 6 },
  { type: 'relative', flags: PTRFLAGS.MOVE, dx: -7, dy: 300 },
];

describe('client input PDUs', () => {
  it('reads the fast-path events a client sends, with the count in the header or in its own byte', () => {
    expect(decodeFastPathInput(encodeFastPathInput(events))).toEqual(events);
    const many = Array.from(
      { length: 20 },
      (_, i): InputEvent => ({ type: 'unicode', code: 0x41 + i, release: false }),
    );
    const pdu = encodeFastPathInput(many);
    expect(pdu[0]! >> 2).toBe(0);
    expect(decodeFastPathInput(pdu)).toEqual(many);
    // A sync event's flags live in the event header (five bits).
    expect(decodeFastPathInput(encodeFastPathInput([{ type: 'sync', flags: 0x3 }]))).toEqual([
      { type: 'sync', flags: 0x3 },
    ]);
  });

  it('reads fast-path bytes as IronRDP sends them: one-byte length, scancode press of "a"', () => {
    // header: 1 event, action fastpath; length 4; event header: scancode, no flags; key 0x1e.
    expect(decodeFastPathInput(Uint8Array.of(0x04, 0x04, 0x00, 0x1e))).toEqual([
      { type: 'scancode', code: 0x1e, release: false, extended: false },
    ]);
  });

  it('yields nothing from an encrypted fast-path PDU (standard RDP security is never negotiated)', () => {
    expect(decodeFastPathInput(Uint8Array.of(0x84, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0x1e))).toEqual([]);
  });

  it('reads slow-path Input Event PDUs and ignores every other TPKT frame', () => {
    expect(decodeSlowPathInput(encodeSlowPathInput(events))).toEqual(events);
    // The X.224 Connection Request, an MCS Erect Domain Request: not input.
    expect(decodeSlowPathInput(Buffer.from('0300000b06e00000000000', 'hex'))).toBeUndefined();
    expect(decodeSlowPathInput(Buffer.from('0300000c02f0800401000100', 'hex'))).toBeUndefined();
    // A Confirm Active (pduType 3) on the I/O channel: not input.
    const confirm = encodeSlowPathInput(events);
    confirm[17] = 0x13;
    expect(decodeSlowPathInput(confirm)).toBeUndefined();
  });

  it('refuses a slow-path PDU that claims more events than it holds', () => {
    const pdu = encodeSlowPathInput(events);
    pdu[33] = 200;
    expect(() => decodeSlowPathInput(pdu)).toThrow(RdpWireError);
  });

  it('frames the client stream: CredSSP before the first TPKT frame, fast-path after', () => {
    const fp = encodeFastPathInput(events.slice(0, 3));
    expect(clientFrame(fp, false)).toEqual({ kind: 'fastpath', length: fp.length });
    expect(clientFrame(fp.subarray(0, 2), false)).toBeUndefined();
    const tpkt = encodeSlowPathInput(events);
    expect(clientFrame(tpkt, true)).toEqual({ kind: 'tpkt', length: tpkt.length });
    expect(clientFrame(tpkt.subarray(0, tpkt.length - 1), true)).toBeUndefined();
    const ts = Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), Buffer.alloc(0x100)]);
    expect(clientFrame(ts, true)).toEqual({ kind: 'der', length: 0x104 });
    // 0x30 after MCS is a fast-path PDU of twelve events.
    expect(clientFrame(Buffer.from([0x30, 0x05, 0, 0, 0]), false)).toEqual({ kind: 'fastpath', length: 5 });
    expect(() => clientFrame(Buffer.from([0x01, 0x05]), false)).toThrow(RdpWireError);
    expect(() => clientFrame(Buffer.from([0x30, 0x84, 1, 0, 0, 0]), true)).toThrow(RdpWireError);
  });
});
