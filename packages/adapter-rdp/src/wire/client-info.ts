import { encodeTpkt, RdpWireError, readTpkt } from './tpkt.js';

/**
 * The Client Info PDU (MS-RDPBCGR 2.2.1.11) of a connection with TLS (not
 * standard RDP) security: TPKT, X.224 Data, an MCS Send Data Request on the
 * I/O channel, the basic security header with SEC_INFO_PKT, then
 * TS_INFO_PACKET with the user name, domain and password in UTF-16LE. The
 * gateway rewrites it for targets without NLA so the user never holds the
 * Windows password (docs/decisions/0025-rdp.md). Pure: no I/O.
 */

/** TS_INFO_PACKET flags the gateway sets or reads. */
export const INFO = {
  AUTOLOGON: 0x8,
  UNICODE: 0x10,
} as const;

const X224_DATA = Buffer.from([0x02, 0xf0, 0x80]);
const MCS_SEND_DATA_REQUEST = 0x64;
const SEC_INFO_PKT = 0x0040;
/** Each string field is at most 512 bytes plus the terminator in MS-RDPBCGR. */
const MAX_FIELD_BYTES = 512;

export interface ClientInfo {
  /** MCS user id (initiator) and channel (the I/O channel) of the Send Data Request. */
  initiator: number;
  channelId: number;
  /** The basic security header's flags (SEC_INFO_PKT and any others the client set) and flagsHi. */
  securityFlags: number;
  securityFlagsHi: number;
  codePage: number;
  flags: number;
  domain: string;
  userName: string;
  password: string;
  alternateShell: string;
  workingDir: string;
  /** TS_EXTENDED_INFO_PACKET and anything after it, kept as bytes. */
  extra: Buffer;
}

class Reader {
  #off = 0;
  constructor(readonly buf: Buffer) {}
  need(n: number, what: string): void {
    if (this.#off + n > this.buf.length) throw new RdpWireError(`Client Info PDU truncated in ${what}`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.#off++]!;
  }
  u16be(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.#off);
    this.#off += 2;
    return v;
  }
  u16le(what: string): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.#off);
    this.#off += 2;
    return v;
  }
  u32le(what: string): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.#off);
    this.#off += 4;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return b;
  }
  rest(): Buffer {
    return this.buf.subarray(this.#off);
  }
  get offset(): number {
    return this.#off;
  }
}

/** PER length determinant (X.691 10.9): one byte below 128, else two with the top bit set. */
function perLength(r: Reader): number {
  const first = r.u8('PER length');
  if ((first & 0x80) === 0) return first;
  if ((first & 0x40) !== 0) throw new RdpWireError('fragmented PER length in the Client Info PDU');
  return ((first & 0x3f) << 8) | r.u8('PER length');
}

function encodePerLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  if (n > 0x3fff) throw new RdpWireError('Client Info PDU too long');
  return Buffer.from([0x80 | (n >> 8), n & 0xff]);
}

function utf16Field(r: Reader, cb: number, what: string): string {
  if (cb > MAX_FIELD_BYTES || cb % 2 !== 0)
    throw new RdpWireError(`Client Info ${what} length ${cb} is invalid`);
  const s = r.bytes(cb, what).toString('utf16le');
  const nul = r.u16le(`${what} terminator`);
  if (nul !== 0) throw new RdpWireError(`Client Info ${what} is not NUL-terminated`);
  return s;
}

/** True when `frame` (one whole TPKT frame) is a Client Info PDU; other PDUs are relayed untouched. */
export function isClientInfoPdu(frame: Uint8Array): boolean {
  try {
    decodeClientInfoPdu(frame);
    return true;
  } catch (err) {
    if (err instanceof RdpWireError) return false;
    throw err;
  }
}

export function decodeClientInfoPdu(frame: Uint8Array): ClientInfo {
  const t = readTpkt(frame);
  if (!t || t.length !== frame.length)
    throw new RdpWireError('the Client Info PDU is not one whole TPKT frame');
  const r = new Reader(t.payload);
  if (!r.bytes(3, 'X.224 Data header').equals(X224_DATA)) throw new RdpWireError('not an X.224 Data TPDU');
  if (r.u8('MCS header') !== MCS_SEND_DATA_REQUEST) throw new RdpWireError('not an MCS Send Data Request');
  const initiator = r.u16be('MCS initiator');
  const channelId = r.u16be('MCS channel');
  r.u8('MCS priority');
  const len = perLength(r);
  if (len !== r.buf.length - r.offset)
    throw new RdpWireError('MCS user data length does not match the frame');
  const securityFlags = r.u16le('security header');
  const securityFlagsHi = r.u16le('security header');
  if ((securityFlags & SEC_INFO_PKT) === 0) throw new RdpWireError('not a Client Info PDU (no SEC_INFO_PKT)');
  const codePage = r.u32le('CodePage');
  const flags = r.u32le('flags');
  if ((flags & INFO.UNICODE) === 0)
    throw new RdpWireError('Client Info PDU without INFO_UNICODE is not supported');
  const cbDomain = r.u16le('cbDomain');
  const cbUserName = r.u16le('cbUserName');
  const cbPassword = r.u16le('cbPassword');
  const cbAlternateShell = r.u16le('cbAlternateShell');
  const cbWorkingDir = r.u16le('cbWorkingDir');
  return {
    initiator,
    channelId,
    securityFlags,
    securityFlagsHi,
    codePage,
    flags,
    domain: utf16Field(r, cbDomain, 'Domain'),
    userName: utf16Field(r, cbUserName, 'UserName'),
    password: utf16Field(r, cbPassword, 'Password'),
    alternateShell: utf16Field(r, cbAlternateShell, 'AlternateShell'),
    workingDir: utf16Field(r, cbWorkingDir, 'WorkingDir'),
    extra: Buffer.from(r.rest()),
  };
}

function field(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf16le');
  if (b.length > MAX_FIELD_BYTES)
    throw new RdpWireError(`Client Info ${what} is longer than ${MAX_FIELD_BYTES} bytes`);
  return b;
}

export function encodeClientInfoPdu(c: ClientInfo): Buffer {
  const strings = [
    field(c.domain, 'Domain'),
    field(c.userName, 'UserName'),
    field(c.password, 'Password'),
    field(c.alternateShell, 'AlternateShell'),
    field(c.workingDir, 'WorkingDir'),
  ];
  // security header (flags, flagsHi), CodePage, flags, then the five cb* lengths
  const fixed = Buffer.alloc(2 + 2 + 4 + 4 + 2 * 5);
  fixed.writeUInt16LE(c.securityFlags | SEC_INFO_PKT, 0);
  fixed.writeUInt16LE(c.securityFlagsHi, 2);
  fixed.writeUInt32LE(c.codePage >>> 0, 4);
  fixed.writeUInt32LE((c.flags | INFO.UNICODE) >>> 0, 8);
  for (const [i, s] of strings.entries()) fixed.writeUInt16LE(s.length, 12 + 2 * i);
  const userData = Buffer.concat([fixed, ...strings.flatMap((s) => [s, Buffer.alloc(2)]), c.extra]);
  const mcs = Buffer.alloc(6);
  mcs[0] = MCS_SEND_DATA_REQUEST;
  mcs.writeUInt16BE(c.initiator, 1);
  mcs.writeUInt16BE(c.channelId, 3);
  mcs[5] = 0x70;
  return encodeTpkt(Buffer.concat([X224_DATA, mcs, encodePerLength(userData.length), userData]));
}

/**
 * The same PDU logging in as `cred` instead of whatever the client typed:
 * user, domain and password replaced, auto-logon on. Everything else the
 * client asked for (shell, working dir, extended info) is kept.
 */
export function withCredentials(
  c: ClientInfo,
  cred: { userName: string; password: string; domain?: string | undefined },
): ClientInfo {
  return {
    ...c,
    userName: cred.userName,
    password: cred.password,
    domain: cred.domain ?? '',
    flags: c.flags | INFO.AUTOLOGON,
  };
}
