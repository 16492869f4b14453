import { describe, expect, it } from 'vitest';
import {
  decodeRequest,
  decodeResponse,
  derMessageLength,
  encodeRequest,
  encodeResponse,
  MAX_RDCLEANPATH_REQUEST,
} from './rdcleanpath.js';
import { RdpWireError } from './tpkt.js';

const CR = Buffer.from('0300000b06e00000000000', 'hex');

describe('RDCleanPath', () => {
  it('encodes a request as IronRDP does: EXPLICIT context tags, version 3390, UTF8String, OCTET STRING', () => {
    const der = encodeRequest({ destination: 'win1', proxyAuth: 'tok', x224: CR });
    // [0] INTEGER 3390 | [2] UTF8String "win1" | [3] UTF8String "tok" | [6] OCTET STRING CR
    const body = 'a00402020d3e' + 'a2060c0477696e31' + 'a3050c03746f6b' + `a60d040b${CR.toString('hex')}`;
    expect(der.toString('hex')).toBe(`30${(body.length / 2).toString(16)}${body}`);
    expect(decodeRequest(der)).toEqual({ destination: 'win1', proxyAuth: 'tok', x224: CR });
  });

  it('round-trips a response with a certificate chain and an error with an HTTP status', () => {
    const ok = encodeResponse({
      type: 'response',
      x224: Buffer.from('030000130ed000001234000200080001000000', 'hex'),
      serverCertChain: [Buffer.from([1, 2, 3]), Buffer.from([4, 5])],
      serverAddr: '127.0.0.1:3389',
    });
    expect(decodeResponse(ok)).toEqual({
      type: 'response',
      x224: Buffer.from('030000130ed000001234000200080001000000', 'hex'),
      serverCertChain: [Buffer.from([1, 2, 3]), Buffer.from([4, 5])],
      serverAddr: '127.0.0.1:3389',
    });
    // [7] holds a SEQUENCE OF OCTET STRING
    expect(ok.toString('hex')).toContain('a70b3009040301020304020405');
    const err = encodeResponse({ type: 'error', error: { errorCode: 1, httpStatusCode: 403 } });
    // [1] SEQUENCE { [0] INTEGER 1, [1] INTEGER 403 }
    expect(err.toString('hex')).toBe('3015a00402020d3ea10d300ba003020101a10402020193');
    expect(decodeResponse(err)).toEqual({ type: 'error', error: { errorCode: 1, httpStatusCode: 403 } });
  });

  it('refuses a request without a token, a destination, or with another version', () => {
    const noAuth = encodeRequest({ destination: 'w', proxyAuth: 'x', x224: CR });
    // Drop the [3] field by re-encoding by hand: version + destination + x224 only.
    const body = Buffer.from('a00402020d3e' + 'a2030c0177' + `a60d040b${CR.toString('hex')}`, 'hex');
    const missing = Buffer.concat([Buffer.from([0x30, body.length]), body]);
    expect(() => decodeRequest(missing)).toThrow(/no proxy_auth/);
    const v2 = Buffer.from(noAuth);
    v2[v2.indexOf(0x0d)] = 0x0c; // 3390 -> 3134
    expect(() => decodeRequest(v2)).toThrow(/version 3134/);
    expect(() => decodeRequest(Buffer.from('3003020101', 'hex'))).toThrow(RdpWireError);
  });

  it('frames a message by its DER header and refuses oversized or non-SEQUENCE input', () => {
    const der = encodeRequest({ destination: 'win1', proxyAuth: 'tok', x224: CR });
    expect(derMessageLength(der.subarray(0, 1), MAX_RDCLEANPATH_REQUEST)).toBeUndefined();
    expect(derMessageLength(der, MAX_RDCLEANPATH_REQUEST)).toBe(der.length);
    expect(() =>
      derMessageLength(Buffer.from([0x30, 0x83, 0x10, 0x00, 0x00]), MAX_RDCLEANPATH_REQUEST),
    ).toThrow(/over 65536/);
    expect(() => derMessageLength(Buffer.from([0x03, 0x00]), MAX_RDCLEANPATH_REQUEST)).toThrow(
      /no DER SEQUENCE/,
    );
    expect(derMessageLength(Buffer.from([0x30, 0x82, 0x01]), MAX_RDCLEANPATH_REQUEST)).toBeUndefined();
  });
});
