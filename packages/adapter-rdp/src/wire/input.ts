import { encodeTpkt, RdpWireError, TPKT_VERSION } from './tpkt.js';

/**
 * Client input PDUs (MS-RDPBCGR 2.2.8.1.2 fast-path, 2.2.8.1.1.3 slow-path)
 * and the framing of the client-to-server byte stream they travel in, for
 * the session recording's input events (docs/decisions/0025-rdp.md). Pure:
 * bytes in, events out; what a recording keeps of them is decided by the
 * adapter (no key identity is ever stored).
 */

/** One input event as the client sent it. */
export type InputEvent =
  | { type: 'scancode'; code: number; release: boolean; extended: boolean }
  | { type: 'unicode'; code: number; release: boolean }
  /** TS_POINTER_EVENT: move, buttons 1-3, wheels (`flags` are PTRFLAGS_*). */
  | { type: 'mouse'; flags: number; x: number; y: number }
  /** TS_POINTERX_EVENT: the extended buttons (`flags` are PTRXFLAGS_*). */
  | { type: 'mousex'; flags: number; x: number; y: number }
  /** TS_FP_RELPOINTER_EVENT: a relative move (buttons in `flags` as for `mouse` and `mousex`). */
  | { type: 'relative'; flags: number; dx: number; dy: number }
  | { type: 'sync'; flags: number };

export const PTRFLAGS = {
  HWHEEL: 0x0400,
  WHEEL: 0x0200,
  WHEEL_NEGATIVE: 0x0100,
  ROTATION_MASK: 0x01ff,
  MOVE: 0x0800,
  DOWN: 0x8000,
  BUTTON1: 0x1000,
  BUTTON2: 0x2000,
  BUTTON3: 0x4000,
} as const;

export const PTRXFLAGS = { DOWN: 0x8000, BUTTON1: 0x0001, BUTTON2: 0x0002 } as const;

/** Fast-path keyboard event flags (in the 5-bit eventFlags of the event header). */
const FASTPATH_KBD_RELEASE = 0x01;
const FASTPATH_KBD_EXTENDED = 0x02;
const FASTPATH_INPUT_ENCRYPTED = 0x2;

/** Slow-path keyboardFlags. */
const KBDFLAGS_EXTENDED = 0x0100;
const KBDFLAGS_RELEASE = 0x8000;

/** What a frame of the client's stream is. */
export type ClientFrameKind = 'fastpath' | 'tpkt' | 'der';

/** The largest DER message (a CredSSP TSRequest) the framer steps over. */
export const MAX_DER_FRAME = 1 << 20;

/**
 * The first frame in the client's stream: its kind and total length, or
 * `undefined` while more bytes are needed. `beforeMcs` says whether a
 * DER-encoded CredSSP message can still come (only before the first TPKT
 * frame): a first byte of 0x30 is CredSSP then, a fast-path PDU after.
 * Anything else is an RdpWireError.
 */
export function clientFrame(
  buf: Uint8Array,
  beforeMcs: boolean,
): { kind: ClientFrameKind; length: number } | undefined {
  if (buf.length < 1) return undefined;
  const b = buf[0]!;
  if (b === TPKT_VERSION) {
    if (buf.length < 4) return undefined;
    const len = (buf[2]! << 8) | buf[3]!;
    if (len < 5) throw new RdpWireError(`TPKT length ${len} is too short`);
    return buf.length >= len ? { kind: 'tpkt', length: len } : undefined;
  }
  if (beforeMcs && b === 0x30) {
    const len = derLength(buf);
    return len === undefined || buf.length < len ? undefined : { kind: 'der', length: len };
  }
  if ((b & 0x3) === 0) {
    if (buf.length < 2) return undefined;
    const l1 = buf[1]!;
    let len = l1;
    if (l1 & 0x80) {
      if (buf.length < 3) return undefined;
      len = ((l1 & 0x7f) << 8) | buf[2]!;
    }
    if (len < 2) throw new RdpWireError(`fast-path length ${len} is too short`);
    return buf.length >= len ? { kind: 'fastpath', length: len } : undefined;
  }
  throw new RdpWireError(`unknown client PDU (first byte 0x${b.toString(16)})`);
}

function derLength(buf: Uint8Array): number | undefined {
  if (buf.length < 2) return undefined;
  const first = buf[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0 || n > 3) throw new RdpWireError('CredSSP message length is not DER');
  if (buf.length < 2 + n) return undefined;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + buf[2 + i]!;
  if (2 + n + len > MAX_DER_FRAME) throw new RdpWireError(`CredSSP message of ${len} bytes is too large`);
  return 2 + n + len;
}

class Cursor {
  off: number;
  constructor(
    readonly buf: Uint8Array,
    off: number,
    readonly what: string,
  ) {
    this.off = off;
  }
  need(n: number): void {
    if (this.off + n > this.buf.length) throw new RdpWireError(`${this.what} truncated`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u16le(): number {
    this.need(2);
    const v = this.buf[this.off]! | (this.buf[this.off + 1]! << 8);
    this.off += 2;
    return v;
  }
  i16le(): number {
    const v = this.u16le();
    return v & 0x8000 ? v - 0x10000 : v;
  }
  u16be(): number {
    this.need(2);
    const v = (this.buf[this.off]! << 8) | this.buf[this.off + 1]!;
    this.off += 2;
    return v;
  }
  u32le(): number {
    const lo = this.u16le();
    return lo + this.u16le() * 0x10000;
  }
  skip(n: number): void {
    this.need(n);
    this.off += n;
  }
  get left(): number {
    return this.buf.length - this.off;
  }
}

/**
 * The events of one fast-path input PDU (a whole frame as `clientFrame`
 * measured it). An encrypted PDU (standard RDP security, which the gateway
 * never negotiates) yields no events: its contents cannot be read.
 */
export function decodeFastPathInput(frame: Uint8Array): InputEvent[] {
  const c = new Cursor(frame, 0, 'fast-path input PDU');
  const h = c.u8();
  if ((h & 0x3) !== 0) throw new RdpWireError('not a fast-path input PDU');
  const l1 = c.u8();
  if (l1 & 0x80) c.u8();
  if ((h >> 6) & FASTPATH_INPUT_ENCRYPTED) return [];
  let n = (h >> 2) & 0xf;
  if (n === 0) n = c.u8();
  const out: InputEvent[] = [];
  for (let i = 0; i < n; i++) {
    const eh = c.u8();
    const flags = eh & 0x1f;
    const code = eh >> 5;
    switch (code) {
      case 0: // FASTPATH_INPUT_EVENT_SCANCODE
        out.push({
          type: 'scancode',
          code: c.u8(),
          release: (flags & FASTPATH_KBD_RELEASE) !== 0,
          extended: (flags & FASTPATH_KBD_EXTENDED) !== 0,
        });
        break;
      case 1: // MOUSE
      case 2: {
        // MOUSEX
        const f = c.u16le();
        out.push({ type: code === 1 ? 'mouse' : 'mousex', flags: f, x: c.u16le(), y: c.u16le() });
        break;
      }
      case 3: // SYNC: the toggle keys' state lives in the header's flags
        out.push({ type: 'sync', flags });
        break;
      case 4: // UNICODE
        out.push({ type: 'unicode', code: c.u16le(), release: (flags & FASTPATH_KBD_RELEASE) !== 0 });
        break;
      case 5: // QOE_TIMESTAMP: not input
        c.skip(4);
        break;
      case 6: {
        // RELMOUSE
        const f = c.u16le();
        out.push({ type: 'relative', flags: f, dx: c.i16le(), dy: c.i16le() });
        break;
      }
      default:
        throw new RdpWireError(`unknown fast-path input event code ${code}`);
    }
  }
  return out;
}

const X224_DATA = [0x02, 0xf0, 0x80] as const;
const MCS_SEND_DATA_REQUEST = 0x64;
const PDUTYPE_DATAPDU = 0x7;
const PDUTYPE2_INPUT = 0x1c;
const PACKET_COMPRESSED = 0x20;
/** Every slow-path input event is 12 bytes (eventTime, messageType, six bytes of data). */
const SLOW_EVENT_BYTES = 12;

/**
 * The events of a slow-path Input Event PDU (TPKT, X.224 Data, MCS Send
 * Data Request, Share Control and Share Data headers, TS_INPUT_PDU_DATA),
 * or `undefined` for any other TPKT frame (the connection sequence, other
 * data PDUs, virtual channels). A compressed input PDU yields no events.
 */
export function decodeSlowPathInput(frame: Uint8Array): InputEvent[] | undefined {
  const c = new Cursor(frame, 4, 'slow-path input PDU');
  if (frame[0] !== TPKT_VERSION || frame.length < 4 + X224_DATA.length) return undefined;
  for (const b of X224_DATA) if (c.u8() !== b) return undefined;
  if (c.left < 7 || c.u8() !== MCS_SEND_DATA_REQUEST) return undefined;
  c.u16be(); // initiator
  c.u16be(); // channel
  c.u8(); // dataPriority and segmentation
  const l = c.u8();
  const len = l & 0x80 ? ((l & 0x3f) << 8) | c.u8() : l;
  if (len !== c.left || c.left < 6 + 12) return undefined;
  const totalLength = c.u16le();
  const pduType = c.u16le();
  c.u16le(); // pduSource
  // A Share Control Header counts itself; anything that does not add up is not one (a channel PDU).
  if ((pduType & 0xf) !== PDUTYPE_DATAPDU || totalLength !== len) return undefined;
  c.skip(4 + 1 + 1 + 2); // shareId, pad1, streamId, uncompressedLength
  if (c.u8() !== PDUTYPE2_INPUT) return undefined;
  const compressedType = c.u8();
  c.u16le(); // compressedLength
  if (compressedType & PACKET_COMPRESSED) return [];
  const n = c.u16le();
  c.u16le(); // pad2
  if (n * SLOW_EVENT_BYTES > c.left) throw new RdpWireError(`slow-path input PDU claims ${n} events`);
  const out: InputEvent[] = [];
  for (let i = 0; i < n; i++) {
    c.u32le(); // eventTime
    const type = c.u16le();
    switch (type) {
      case 0x0000: {
        // INPUT_EVENT_SYNC
        c.u16le();
        out.push({ type: 'sync', flags: c.u32le() });
        break;
      }
      case 0x0004:
      case 0x0005: {
        // INPUT_EVENT_SCANCODE, INPUT_EVENT_UNICODE
        const f = c.u16le();
        const code = c.u16le();
        c.u16le();
        const release = (f & KBDFLAGS_RELEASE) !== 0;
        out.push(
          type === 0x0004
            ? { type: 'scancode', code: code & 0xff, release, extended: (f & KBDFLAGS_EXTENDED) !== 0 }
            : { type: 'unicode', code, release },
        );
        break;
      }
      case 0x8001:
      case 0x8002: {
        // INPUT_EVENT_MOUSE, INPUT_EVENT_MOUSEX
        const f = c.u16le();
        out.push({ type: type === 0x8001 ? 'mouse' : 'mousex', flags: f, x: c.u16le(), y: c.u16le() });
        break;
      }
      case 0x8004: {
        // INPUT_EVENT_MOUSEREL
        const f = c.u16le();
        out.push({ type: 'relative', flags: f, dx: c.i16le(), dy: c.i16le() });
        break;
      }
      default:
        // INPUT_EVENT_UNUSED (0x0002) and anything newer: six bytes to step over.
        c.skip(6);
    }
  }
  return out;
}

/** A fast-path input PDU holding `events` (what a client sends; for tests and the fuzzer). */
export function encodeFastPathInput(events: readonly InputEvent[]): Buffer {
  const body: number[] = [];
  const u16 = (v: number) => body.push(v & 0xff, (v >> 8) & 0xff);
  for (const e of events) {
    switch (e.type) {
      case 'scancode':
        body.push(
          (0 << 5) | (e.release ? FASTPATH_KBD_RELEASE : 0) | (e.extended ? FASTPATH_KBD_EXTENDED : 0),
        );
        body.push(e.code & 0xff);
        break;
      case 'mouse':
      case 'mousex':
        body.push((e.type === 'mouse' ? 1 : 2) << 5);
        u16(e.flags);
        u16(e.x);
        u16(e.y);
        break;
      case 'sync':
        body.push((3 << 5) | (e.flags & 0x1f));
        break;
      case 'unicode':
        body.push((4 << 5) | (e.release ? FASTPATH_KBD_RELEASE : 0));
        u16(e.code);
        break;
      case 'relative':
        body.push(6 << 5);
        u16(e.flags);
        u16(e.dx);
        u16(e.dy);
        break;
    }
  }
  if (events.length > 255) throw new RdpWireError('a fast-path input PDU holds at most 255 events');
  const inHeader = events.length > 0 && events.length < 16;
  const payload = inHeader ? body : [events.length, ...body];
  // Two length bytes always fit (a 255-event PDU is under 2 KiB).
  const len = 1 + 2 + payload.length;
  return Buffer.from([(inHeader ? events.length : 0) << 2, 0x80 | (len >> 8), len & 0xff, ...payload]);
}

/** A slow-path Input Event PDU holding `events` on MCS channel `channel` (for tests and the fuzzer). */
export function encodeSlowPathInput(events: readonly InputEvent[], channel = 1003): Buffer {
  const ev: number[] = [];
  const u16 = (v: number) => ev.push(v & 0xff, (v >> 8) & 0xff);
  const u32 = (v: number) => {
    u16(v & 0xffff);
    u16(Math.floor(v / 0x10000) & 0xffff);
  };
  for (const e of events) {
    u32(0);
    switch (e.type) {
      case 'sync':
        u16(0x0000);
        u16(0);
        u32(e.flags);
        break;
      case 'scancode':
        u16(0x0004);
        u16((e.release ? KBDFLAGS_RELEASE : 0) | (e.extended ? KBDFLAGS_EXTENDED : 0));
        u16(e.code);
        u16(0);
        break;
      case 'unicode':
        u16(0x0005);
        u16(e.release ? KBDFLAGS_RELEASE : 0);
        u16(e.code);
        u16(0);
        break;
      case 'mouse':
      case 'mousex':
        u16(e.type === 'mouse' ? 0x8001 : 0x8002);
        u16(e.flags);
        u16(e.x);
        u16(e.y);
        break;
      case 'relative':
        u16(0x8004);
        u16(e.flags);
        u16(e.dx);
        u16(e.dy);
        break;
    }
  }
  const data = [...le16(events.length), 0, 0, ...ev];
  const shareData = [0xea, 0x03, 0x01, 0x00, 0, 1, ...le16(data.length + 18), PDUTYPE2_INPUT, 0, 0, 0];
  const total = 6 + shareData.length + data.length;
  const control = [...le16(total), ...le16(0x10 | PDUTYPE_DATAPDU), ...le16(1007)];
  if (total > 0x3fff) throw new RdpWireError('slow-path input PDU too large for this encoder');
  const mcs = [
    MCS_SEND_DATA_REQUEST,
    0x00,
    0x06,
    channel >> 8,
    channel & 0xff,
    0x70,
    0x80 | (total >> 8),
    total & 0xff,
  ];
  return encodeTpkt(Buffer.from([...X224_DATA, ...mcs, ...control, ...shareData, ...data]));
}

function le16(v: number): number[] {
  return [v & 0xff, (v >> 8) & 0xff];
}
