/**
 * RFC 6455 frame parser used as a tap on a relayed WebSocket stream: bytes
 * in, frames out, no sockets or timers. It never alters the stream; it only
 * tells the recorder what passed.
 */
import { ByteQueue } from '@gatehouse/core/lite';

export class WsProtocolError extends Error {
  override readonly name = 'WsProtocolError';
}

export interface WsFrame {
  fin: boolean;
  /** 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  opcode: number;
  payload: Buffer;
}

const KNOWN_OPCODES = new Set([0, 1, 2, 8, 9, 10]);

export class WsFrameParser {
  readonly #maxPayload: number;
  readonly #buf = new ByteQueue();
  #closed = false;
  /** A data message whose last fragment has not come yet. */
  #midMessage = false;

  constructor(opts: { maxPayload?: number } = {}) {
    this.#maxPayload = opts.maxPayload ?? 64 * 1024 * 1024;
  }

  /** Feeds bytes; returns the frames completed by them. Throws WsProtocolError on a malformed stream. */
  push(chunk: Uint8Array): WsFrame[] {
    if (this.#closed) return [];
    this.#buf.push(chunk);
    const out: WsFrame[] = [];
    for (;;) {
      // The longest header: 2 bytes, 8 of extended length, 4 of mask.
      const b = this.#buf.peek(Math.min(this.#buf.length, 14));
      if (!b || b.length < 2) break;
      const b0 = b[0]!;
      const b1 = b[1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      if ((b0 & 0x70) !== 0) throw new WsProtocolError('reserved bits set (no extension was negotiated)');
      if (!KNOWN_OPCODES.has(opcode)) throw new WsProtocolError(`unknown opcode ${opcode}`);
      if (opcode >= 8 && !fin) throw new WsProtocolError('fragmented control frame');
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const hi = b.readUInt32BE(2);
        const lo = b.readUInt32BE(6);
        if (hi > 0x1fffff) throw new WsProtocolError('frame length out of range');
        len = hi * 2 ** 32 + lo;
        off = 10;
      }
      if (opcode >= 8 && len > 125) throw new WsProtocolError('control frame longer than 125 bytes');
      if (len > this.#maxPayload) throw new WsProtocolError(`frame of ${len} bytes exceeds the limit`);
      const maskOff = off;
      if (masked) off += 4;
      // Not joined until the whole frame is here: chunks of a large frame are copied once.
      if (this.#buf.length < off + len) break;
      const f = this.#buf.take(off + len);
      const payload = Buffer.from(f.subarray(off, off + len));
      if (masked) {
        for (let i = 0; i < len; i++) payload[i]! ^= f[maskOff + (i & 3)]!;
      }
      out.push({ fin, opcode, payload });
      if (opcode < 8) this.#midMessage = !fin;
      if (opcode === 8) {
        this.#closed = true;
        break;
      }
    }
    return out;
  }

  /**
   * Whether a frame of our own may go in here: no partial frame buffered,
   * and no fragmented data message under way (RFC 6455 section 5.4 allows
   * only control frames between its fragments).
   */
  get atMessageBoundary(): boolean {
    return this.#buf.length === 0 && !this.#midMessage;
  }
}

/** Builds one frame (tests and the fixture server use it; the proxy never rewrites frames). */
export function encodeWsFrame(
  opcode: number,
  payload: Uint8Array,
  opts: { mask?: Uint8Array; fin?: boolean } = {},
): Buffer {
  const len = payload.length;
  const head: number[] = [(opts.fin === false ? 0 : 0x80) | opcode];
  const m = opts.mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff);
  }
  const body = Buffer.from(payload);
  if (opts.mask) {
    for (let i = 0; i < len; i++) body[i]! ^= opts.mask[i & 3]!;
    return Buffer.concat([Buffer.from(head), Buffer.from(opts.mask), body]);
  }
  return Buffer.concat([Buffer.from(head), body]);
}
