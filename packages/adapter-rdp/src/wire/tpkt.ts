/**
 * TPKT (RFC 1006) framing, the outer layer of every RDP PDU before TLS and
 * of the slow-path PDUs after it: version 3, a reserved byte, and a 16-bit
 * big-endian length that counts the 4-byte header. Pure: bytes in, frames out.
 */

export const TPKT_VERSION = 3;
export const TPKT_HEADER = 4;
/** The largest frame the format can describe. */
export const TPKT_MAX = 0xffff;

export class RdpWireError extends Error {
  override name = 'RdpWireError';
}

/** A TPKT frame around `payload`. Throws when the payload does not fit. */
export function encodeTpkt(payload: Uint8Array): Buffer {
  const len = payload.length + TPKT_HEADER;
  if (len > TPKT_MAX) throw new RdpWireError(`TPKT payload of ${payload.length} bytes does not fit`);
  const out = Buffer.allocUnsafe(len);
  out[0] = TPKT_VERSION;
  out[1] = 0;
  out.writeUInt16BE(len, 2);
  out.set(payload, TPKT_HEADER);
  return out;
}

/**
 * The first complete TPKT frame in `buf`: `undefined` while more bytes are
 * needed, the frame's payload and total length once there, an RdpWireError
 * for bytes that are not TPKT.
 */
export function readTpkt(buf: Uint8Array): { payload: Buffer; length: number } | undefined {
  if (buf.length < 1) return undefined;
  if (buf[0] !== TPKT_VERSION)
    throw new RdpWireError(`not a TPKT frame (first byte 0x${buf[0]!.toString(16)})`);
  if (buf.length < TPKT_HEADER) return undefined;
  const len = (buf[2]! << 8) | buf[3]!;
  if (len < TPKT_HEADER + 1) throw new RdpWireError(`TPKT length ${len} is too short`);
  if (buf.length < len) return undefined;
  return { payload: Buffer.from(buf.subarray(TPKT_HEADER, len)), length: len };
}
