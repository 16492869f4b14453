import { encodeTpkt, RdpWireError, readTpkt } from './tpkt.js';

/**
 * X.224 Connection Request and Confirm as RDP uses them (MS-RDPBCGR
 * 2.2.1.1 and 2.2.1.2): the class 0 TPDU header, an optional cookie or
 * routing token line, and the RDP negotiation request/response/failure.
 * Both sit in one TPKT frame. Pure: no I/O.
 */

/** Security protocols (requestedProtocols / selectedProtocol flags). */
export const PROTOCOL = {
  RDP: 0,
  SSL: 0x1,
  HYBRID: 0x2,
  RDSTLS: 0x4,
  HYBRID_EX: 0x8,
} as const;

const CR_CODE = 0xe0;
const CC_CODE = 0xd0;
const NEG_REQ = 0x01;
const NEG_RSP = 0x02;
const NEG_FAILURE = 0x03;
const CORRELATION_INFO = 0x06;
const CORRELATION_INFO_PRESENT = 0x08;
/** Fixed part after the length indicator: code, dst-ref (2), src-ref (2), class. */
const FIXED = 6;
/** The cookie line is bounded by the TPDU's one-byte length indicator anyway; this names it. */
const MAX_LINE = 250;

export interface ConnectionRequest {
  /** `Cookie: mstshash=IDENTIFIER` (the user name clients send); without the prefix and CRLF. */
  cookie?: string | undefined;
  /** `Cookie: msts=...` routing token of a load balancer; without the prefix and CRLF. */
  routingToken?: string | undefined;
  /** RDP_NEG_REQ; absent means standard RDP security only. */
  negotiation?: { flags: number; requestedProtocols: number } | undefined;
  /** RDP_NEG_CORRELATION_INFO's 16-byte correlation id, when present. */
  correlationId?: Buffer | undefined;
}

export type ConnectionConfirm =
  | { type: 'response'; flags: number; selectedProtocol: number }
  | { type: 'failure'; failureCode: number }
  /** No negotiation structure: the server speaks standard RDP security. */
  | { type: 'legacy' };

function header(code: number, variable: Buffer): Buffer {
  const li = FIXED + variable.length;
  if (li > 0xfe) throw new RdpWireError('X.224 TPDU header too long');
  const h = Buffer.alloc(1 + FIXED);
  h[0] = li;
  h[1] = code;
  // dst-ref 0, src-ref 0, class 0
  return Buffer.concat([h, variable]);
}

function negStructure(type: number, flags: number, value: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = type;
  b[1] = flags;
  b.writeUInt16LE(8, 2);
  b.writeUInt32LE(value >>> 0, 4);
  return b;
}

function checkLine(s: string, what: string): void {
  if (s.length > MAX_LINE || /[\r\n\0]/.test(s) || /[^\x20-\x7e]/.test(s)) {
    throw new RdpWireError(`X.224 ${what} must be printable ASCII of at most ${MAX_LINE} characters`);
  }
}

export function encodeConnectionRequest(r: ConnectionRequest): Buffer {
  const parts: Buffer[] = [];
  if (r.routingToken !== undefined) {
    checkLine(r.routingToken, 'routing token');
    parts.push(Buffer.from(`Cookie: msts=${r.routingToken}\r\n`, 'latin1'));
  } else if (r.cookie !== undefined) {
    checkLine(r.cookie, 'cookie');
    parts.push(Buffer.from(`Cookie: mstshash=${r.cookie}\r\n`, 'latin1'));
  }
  if (r.negotiation) {
    let flags = r.negotiation.flags & ~CORRELATION_INFO_PRESENT;
    if (r.correlationId) flags |= CORRELATION_INFO_PRESENT;
    parts.push(negStructure(NEG_REQ, flags, r.negotiation.requestedProtocols));
    if (r.correlationId) {
      if (r.correlationId.length !== 16) throw new RdpWireError('correlation id must be 16 bytes');
      const c = Buffer.alloc(36);
      c[0] = CORRELATION_INFO;
      c.writeUInt16LE(36, 2);
      r.correlationId.copy(c, 4);
      parts.push(c);
    }
  }
  return encodeTpkt(header(CR_CODE, Buffer.concat(parts)));
}

/** The TPDU inside one TPKT frame, checked to be complete and of `code`. */
function tpdu(frame: Uint8Array, code: number, name: string): Buffer {
  const t = readTpkt(frame);
  if (!t) throw new RdpWireError(`truncated X.224 ${name}`);
  if (t.length !== frame.length) throw new RdpWireError(`trailing bytes after the X.224 ${name}`);
  const p = t.payload;
  if (p.length < 1 + FIXED) throw new RdpWireError(`X.224 ${name} too short`);
  const li = p[0]!;
  if (li + 1 !== p.length)
    throw new RdpWireError(`X.224 ${name} length indicator ${li} does not match its frame`);
  if ((p[1]! & 0xf0) !== code) throw new RdpWireError(`not an X.224 ${name} (code 0x${p[1]!.toString(16)})`);
  if (p[6] !== 0) throw new RdpWireError(`X.224 ${name} is not class 0`);
  return p.subarray(1 + FIXED);
}

/** Decodes one whole TPKT frame holding an X.224 Connection Request. */
export function decodeConnectionRequest(frame: Uint8Array): ConnectionRequest {
  let rest = tpdu(frame, CR_CODE, 'Connection Request');
  const out: ConnectionRequest = {};
  if (rest.length >= 8 && rest.subarray(0, 7).toString('latin1') === 'Cookie:') {
    const end = rest.indexOf('\r\n');
    if (end < 0) throw new RdpWireError('X.224 cookie line has no CRLF');
    const line = rest.subarray(0, end).toString('latin1');
    rest = rest.subarray(end + 2);
    const hash = /^Cookie: mstshash=(.*)$/.exec(line);
    const token = /^Cookie: msts=(.*)$/.exec(line);
    if (hash) {
      checkLine(hash[1]!, 'cookie');
      out.cookie = hash[1]!;
    } else if (token) {
      checkLine(token[1]!, 'routing token');
      out.routingToken = token[1]!;
    } else throw new RdpWireError('unknown X.224 cookie line');
  }
  if (rest.length === 0) return out;
  if (rest.length < 8 || rest[0] !== NEG_REQ || rest.readUInt16LE(2) !== 8) {
    throw new RdpWireError('malformed RDP negotiation request');
  }
  const flags = rest[1]!;
  out.negotiation = { flags, requestedProtocols: rest.readUInt32LE(4) };
  rest = rest.subarray(8);
  if (flags & CORRELATION_INFO_PRESENT) {
    if (rest.length !== 36 || rest[0] !== CORRELATION_INFO || rest.readUInt16LE(2) !== 36) {
      throw new RdpWireError('malformed RDP correlation info');
    }
    out.correlationId = Buffer.from(rest.subarray(4, 20));
    rest = rest.subarray(36);
  }
  if (rest.length !== 0) throw new RdpWireError('trailing bytes after the RDP negotiation request');
  return out;
}

export function encodeConnectionConfirm(c: ConnectionConfirm): Buffer {
  const variable =
    c.type === 'response'
      ? negStructure(NEG_RSP, c.flags, c.selectedProtocol)
      : c.type === 'failure'
        ? negStructure(NEG_FAILURE, 0, c.failureCode)
        : Buffer.alloc(0);
  return encodeTpkt(header(CC_CODE, variable));
}

/** Decodes one whole TPKT frame holding an X.224 Connection Confirm. */
export function decodeConnectionConfirm(frame: Uint8Array): ConnectionConfirm {
  const rest = tpdu(frame, CC_CODE, 'Connection Confirm');
  if (rest.length === 0) return { type: 'legacy' };
  if (rest.length !== 8 || rest.readUInt16LE(2) !== 8) {
    throw new RdpWireError('malformed RDP negotiation response');
  }
  const value = rest.readUInt32LE(4);
  if (rest[0] === NEG_RSP) return { type: 'response', flags: rest[1]!, selectedProtocol: value };
  if (rest[0] === NEG_FAILURE) return { type: 'failure', failureCode: value };
  throw new RdpWireError(`unknown RDP negotiation type ${rest[0]}`);
}

/** The name of a selected protocol for audit events. */
export function protocolName(p: number): string {
  switch (p) {
    case PROTOCOL.RDP:
      return 'rdp';
    case PROTOCOL.SSL:
      return 'ssl';
    case PROTOCOL.HYBRID:
      return 'hybrid';
    case PROTOCOL.RDSTLS:
      return 'rdstls';
    case PROTOCOL.HYBRID_EX:
      return 'hybrid_ex';
    default:
      return `0x${p.toString(16)}`;
  }
}
