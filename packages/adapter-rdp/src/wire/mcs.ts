import { RdpWireError, readTpkt } from './tpkt.js';

/**
 * The one field of the MCS Connect Initial the gateway changes: the client
 * core data's `serverSelectedProtocol` (MS-RDPBCGR 2.2.1.3.2), which must
 * repeat the protocol the server selected in its X.224 confirm (servers
 * check it against downgrades). When the gateway runs CredSSP itself it
 * tells the client PROTOCOL_SSL was selected, so the client writes 1 there;
 * the desktop selected HYBRID and expects 2.
 *
 * Layout: TPKT, X.224 Data (02 f0 80), BER Connect-Initial (application 101)
 * with two domain selectors, the upward flag, three DomainParameters and the
 * userData OCTET STRING. userData is T.124 GCC in PER: the T.124 object key,
 * a length, the Conference Create Request header with the H.221 key "Duca",
 * a length, then the client data blocks (type u16, length u16, body), of
 * which CS_CORE (0xC001) holds serverSelectedProtocol at byte 212. The field
 * has a fixed size, so it is patched in place. Pure: no I/O.
 */

const X224_DATA = Buffer.from([0x02, 0xf0, 0x80]);
const T124_KEY = Buffer.from([0x00, 0x05, 0x00, 0x14, 0x7c, 0x00, 0x01]);
const CREATE_REQUEST = Buffer.from([0x00, 0x08, 0x00, 0x10, 0x00, 0x01, 0xc0, 0x00, 0x44, 0x75, 0x63, 0x61]);
const CS_CORE = 0xc001;
const SERVER_SELECTED_PROTOCOL = 212;

/** A BER length at `off`: its value and where the content starts. */
function berLength(b: Buffer, off: number): { len: number; next: number } {
  if (off >= b.length) throw new RdpWireError('MCS Connect Initial truncated in a length');
  const first = b[off]!;
  if (first < 0x80) return { len: first, next: off + 1 };
  const n = first & 0x7f;
  if (n === 0 || n > 2 || off + 1 + n > b.length)
    throw new RdpWireError('bad BER length in the MCS Connect Initial');
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[off + 1 + i]!;
  return { len, next: off + 1 + n };
}

/** Skips one BER element of `tag` at `off`; returns where its content starts and ends. */
function element(b: Buffer, off: number, tag: number, what: string): { start: number; end: number } {
  if (b[off] !== tag) throw new RdpWireError(`MCS Connect Initial: ${what} has tag ${b[off]}, not ${tag}`);
  const { len, next } = berLength(b, off + 1);
  if (next + len > b.length) throw new RdpWireError(`MCS Connect Initial truncated in ${what}`);
  return { start: next, end: next + len };
}

/** A PER length (X.691 10.9, as T.124 uses it: one byte, or two with the top bit set). */
function perLength(b: Buffer, off: number, end: number): { len: number; next: number } {
  if (off >= end) throw new RdpWireError('GCC data truncated in a length');
  const first = b[off]!;
  if (!(first & 0x80)) return { len: first, next: off + 1 };
  if (off + 2 > end) throw new RdpWireError('GCC data truncated in a length');
  return { len: ((first & 0x3f) << 8) | b[off + 1]!, next: off + 2 };
}

/** Whether `frame` (one TPKT frame) is an MCS Connect Initial at all. */
export function isConnectInitial(frame: Buffer): boolean {
  return frame.length > 9 && frame.subarray(4, 7).equals(X224_DATA) && frame[7] === 0x7f && frame[8] === 0x65;
}

/**
 * Where serverSelectedProtocol sits in this Connect Initial frame, or
 * `undefined` when its client core data is too short to carry it. Throws an
 * RdpWireError for a frame that is not a well-formed Connect Initial.
 */
export function serverSelectedProtocolOffset(frame: Buffer): number | undefined {
  const t = readTpkt(frame);
  if (!t || t.length !== frame.length) throw new RdpWireError('not one whole TPKT frame');
  if (!isConnectInitial(frame)) throw new RdpWireError('not an MCS Connect Initial');
  const ci = berLength(frame, 9);
  const end = ci.next + ci.len;
  if (end !== frame.length) throw new RdpWireError('MCS Connect Initial length does not match its frame');
  let off = ci.next;
  off = element(frame, off, 0x04, 'callingDomainSelector').end;
  off = element(frame, off, 0x04, 'calledDomainSelector').end;
  off = element(frame, off, 0x01, 'upwardFlag').end;
  for (const p of ['targetParameters', 'minimumParameters', 'maximumParameters'])
    off = element(frame, off, 0x30, p).end;
  const ud = element(frame, off, 0x04, 'userData');
  if (ud.end !== end) throw new RdpWireError('bytes after the MCS Connect Initial userData');
  off = ud.start;
  if (!frame.subarray(off, off + T124_KEY.length).equals(T124_KEY))
    throw new RdpWireError('GCC data without the T.124 key');
  off = perLength(frame, off + T124_KEY.length, ud.end).next;
  if (!frame.subarray(off, off + CREATE_REQUEST.length).equals(CREATE_REQUEST))
    throw new RdpWireError('GCC data is not a Conference Create Request from an RDP client');
  const blocks = perLength(frame, off + CREATE_REQUEST.length, ud.end);
  off = blocks.next;
  const blocksEnd = off + blocks.len;
  if (blocksEnd > ud.end) throw new RdpWireError('GCC client data overruns the userData');
  while (off + 4 <= blocksEnd) {
    const type = frame.readUInt16LE(off);
    const len = frame.readUInt16LE(off + 2);
    if (len < 4 || off + len > blocksEnd)
      throw new RdpWireError(`GCC client data block 0x${type.toString(16)} has a bad length`);
    if (type === CS_CORE)
      return len >= SERVER_SELECTED_PROTOCOL + 4 ? off + SERVER_SELECTED_PROTOCOL : undefined;
    off += len;
  }
  throw new RdpWireError('MCS Connect Initial without client core data');
}

/** The frame with serverSelectedProtocol set to `protocol` (a copy; unchanged when the field is absent). */
export function withServerSelectedProtocol(frame: Buffer, protocol: number): Buffer {
  const at = serverSelectedProtocolOffset(frame);
  const out = Buffer.from(frame);
  if (at !== undefined) out.writeUInt32LE(protocol >>> 0, at);
  return out;
}
