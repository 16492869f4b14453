import {
  AsnParser,
  AsnProp,
  AsnPropTypes,
  AsnSerializer,
  AsnType,
  AsnTypeTypes,
} from '@peculiar/asn1-schema';
import { RdpWireError } from './tpkt.js';

/**
 * RDCleanPath, the one-message-each-way handshake between IronRDP's browser
 * client and a gateway (IronRDP `crates/ironrdp-rdcleanpath`): a DER
 * SEQUENCE of EXPLICIT context-tagged fields, version 3390. The request
 * names the destination, carries the gateway's auth token and the client's
 * X.224 Connection Request; the response carries the server's Connection
 * Confirm and TLS certificate chain, or an error. Pure: no I/O.
 *
 * The schema classes are declared with @peculiar/asn1-schema; its property
 * decorators are applied as plain calls because this project compiles with
 * standard (not legacy) decorators.
 */

export const RDCLEANPATH_VERSION = 3390;
/** A request larger than this is refused (a Connection Request, a token and a name fit in far less). */
export const MAX_RDCLEANPATH_REQUEST = 64 * 1024;

export const RDCLEANPATH_ERROR = { general: 1, negotiation: 2 } as const;

class ErrSchema {
  errorCode = 0;
  httpStatusCode?: number;
  wsaLastError?: number;
  tlsAlertCode?: number;
}
AsnProp({ type: AsnPropTypes.Integer, context: 0 })(ErrSchema.prototype, 'errorCode');
AsnProp({ type: AsnPropTypes.Integer, context: 1, optional: true })(ErrSchema.prototype, 'httpStatusCode');
AsnProp({ type: AsnPropTypes.Integer, context: 2, optional: true })(ErrSchema.prototype, 'wsaLastError');
AsnProp({ type: AsnPropTypes.Integer, context: 3, optional: true })(ErrSchema.prototype, 'tlsAlertCode');
AsnType({ type: AsnTypeTypes.Sequence })(ErrSchema);

class PduSchema {
  version = RDCLEANPATH_VERSION;
  error?: ErrSchema;
  destination?: string;
  proxyAuth?: string;
  serverAuth?: string;
  preconnectionBlob?: string;
  x224ConnectionPdu?: ArrayBuffer;
  serverCertChain?: ArrayBuffer[];
  serverAddr?: string;
}
const field = (n: number, type: AsnPropTypes | typeof ErrSchema, extra: { repeated?: 'sequence' } = {}) =>
  AsnProp({ type, context: n, optional: true, ...extra });
AsnProp({ type: AsnPropTypes.Integer, context: 0 })(PduSchema.prototype, 'version');
field(1, ErrSchema)(PduSchema.prototype, 'error');
field(2, AsnPropTypes.Utf8String)(PduSchema.prototype, 'destination');
field(3, AsnPropTypes.Utf8String)(PduSchema.prototype, 'proxyAuth');
field(4, AsnPropTypes.Utf8String)(PduSchema.prototype, 'serverAuth');
field(5, AsnPropTypes.Utf8String)(PduSchema.prototype, 'preconnectionBlob');
field(6, AsnPropTypes.OctetString)(PduSchema.prototype, 'x224ConnectionPdu');
field(7, AsnPropTypes.OctetString, { repeated: 'sequence' })(PduSchema.prototype, 'serverCertChain');
field(9, AsnPropTypes.Utf8String)(PduSchema.prototype, 'serverAddr');
AsnType({ type: AsnTypeTypes.Sequence })(PduSchema);

export interface RDCleanPathRequest {
  destination: string;
  proxyAuth: string;
  preconnectionBlob?: string | undefined;
  /** The client's X.224 Connection Request (a whole TPKT frame). */
  x224: Buffer;
}

export interface RDCleanPathError {
  errorCode: number;
  httpStatusCode?: number | undefined;
  wsaLastError?: number | undefined;
  tlsAlertCode?: number | undefined;
}

export type RDCleanPathResponse =
  | {
      type: 'response';
      /** The server's X.224 Connection Confirm (a whole TPKT frame). */
      x224: Buffer;
      /** DER certificates, leaf first. */
      serverCertChain: Buffer[];
      serverAddr: string;
    }
  | { type: 'error'; error: RDCleanPathError; x224?: Buffer | undefined };

/**
 * How many bytes the DER message at the start of `buf` takes: undefined
 * while the header is incomplete, an RdpWireError when it is not a SEQUENCE
 * or is longer than `max`.
 */
export function derMessageLength(buf: Uint8Array, max: number): number | undefined {
  if (buf.length < 2) return undefined;
  if (buf[0] !== 0x30) throw new RdpWireError('not an RDCleanPath message (no DER SEQUENCE)');
  const first = buf[1]!;
  let len: number;
  let head: number;
  if (first < 0x80) {
    len = first;
    head = 2;
  } else {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new RdpWireError('RDCleanPath message length is not DER');
    if (buf.length < 2 + n) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[2 + i]!;
    head = 2 + n;
  }
  if (head + len > max) throw new RdpWireError(`RDCleanPath message of ${head + len} bytes is over ${max}`);
  return head + len;
}

function parse(der: Uint8Array): PduSchema {
  let pdu: PduSchema;
  try {
    pdu = AsnParser.parse(der, PduSchema);
  } catch (err) {
    throw new RdpWireError(`malformed RDCleanPath message: ${(err as Error).message}`);
  }
  if (pdu.version !== RDCLEANPATH_VERSION) {
    throw new RdpWireError(`RDCleanPath version ${pdu.version} is not ${RDCLEANPATH_VERSION}`);
  }
  return pdu;
}

/** A client's request; every field a request needs must be there. */
export function decodeRequest(der: Uint8Array): RDCleanPathRequest {
  const p = parse(der);
  if (p.error !== undefined || p.serverCertChain !== undefined || p.serverAddr !== undefined) {
    throw new RdpWireError('an RDCleanPath request carries response fields');
  }
  if (p.destination === undefined) throw new RdpWireError('RDCleanPath request has no destination');
  if (p.proxyAuth === undefined) throw new RdpWireError('RDCleanPath request has no proxy_auth token');
  if (p.x224ConnectionPdu === undefined) throw new RdpWireError('RDCleanPath request has no X.224 request');
  return {
    destination: p.destination,
    proxyAuth: p.proxyAuth,
    ...(p.preconnectionBlob !== undefined ? { preconnectionBlob: p.preconnectionBlob } : {}),
    x224: Buffer.from(p.x224ConnectionPdu),
  };
}

export function encodeRequest(r: RDCleanPathRequest): Buffer {
  const p = new PduSchema();
  p.destination = r.destination;
  p.proxyAuth = r.proxyAuth;
  if (r.preconnectionBlob !== undefined) p.preconnectionBlob = r.preconnectionBlob;
  p.x224ConnectionPdu = toArrayBuffer(r.x224);
  return Buffer.from(AsnSerializer.serialize(p));
}

export function encodeResponse(r: RDCleanPathResponse): Buffer {
  const p = new PduSchema();
  if (r.type === 'response') {
    p.x224ConnectionPdu = toArrayBuffer(r.x224);
    p.serverCertChain = r.serverCertChain.map(toArrayBuffer);
    p.serverAddr = r.serverAddr;
  } else {
    const e = new ErrSchema();
    e.errorCode = r.error.errorCode;
    if (r.error.httpStatusCode !== undefined) e.httpStatusCode = r.error.httpStatusCode;
    if (r.error.wsaLastError !== undefined) e.wsaLastError = r.error.wsaLastError;
    if (r.error.tlsAlertCode !== undefined) e.tlsAlertCode = r.error.tlsAlertCode;
    p.error = e;
    if (r.x224) p.x224ConnectionPdu = toArrayBuffer(r.x224);
  }
  return Buffer.from(AsnSerializer.serialize(p));
}

export function decodeResponse(der: Uint8Array): RDCleanPathResponse {
  const p = parse(der);
  if (p.error !== undefined) {
    return {
      type: 'error',
      error: {
        errorCode: p.error.errorCode,
        ...(p.error.httpStatusCode !== undefined ? { httpStatusCode: p.error.httpStatusCode } : {}),
        ...(p.error.wsaLastError !== undefined ? { wsaLastError: p.error.wsaLastError } : {}),
        ...(p.error.tlsAlertCode !== undefined ? { tlsAlertCode: p.error.tlsAlertCode } : {}),
      },
      ...(p.x224ConnectionPdu !== undefined ? { x224: Buffer.from(p.x224ConnectionPdu) } : {}),
    };
  }
  if (p.x224ConnectionPdu === undefined || p.serverCertChain === undefined || p.serverAddr === undefined) {
    throw new RdpWireError('RDCleanPath response lacks the X.224 confirm, certificate chain or address');
  }
  return {
    type: 'response',
    x224: Buffer.from(p.x224ConnectionPdu),
    serverCertChain: p.serverCertChain.map((c) => Buffer.from(c)),
    serverAddr: p.serverAddr,
  };
}

function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
