import { describe, expect, it } from 'vitest';
import { RdpWireError, readTpkt } from './tpkt.js';
import {
  decodeConnectionConfirm,
  decodeConnectionRequest,
  encodeConnectionConfirm,
  encodeConnectionRequest,
  PROTOCOL,
} from './x224.js';

// A request as xfreerdp sends it (MS-RDPBCGR 4.1.1 layout): cookie "alice", SSL|HYBRID|HYBRID_EX.
const XFREERDP_CR = Buffer.concat([
  Buffer.from('0300002b26e00000000000', 'hex'),
  Buffer.from('Cookie: mstshash=alice\r\n', 'latin1'),
  Buffer.from('010008000b000000', 'hex'),
]);

describe('X.224 connection PDUs', () => {
  it('decodes a client request and encodes it back byte for byte', () => {
    const r = decodeConnectionRequest(XFREERDP_CR);
    expect(r).toEqual({
      cookie: 'alice',
      negotiation: { flags: 0, requestedProtocols: PROTOCOL.SSL | PROTOCOL.HYBRID | PROTOCOL.HYBRID_EX },
    });
    expect(encodeConnectionRequest(r).equals(XFREERDP_CR)).toBe(true);
  });

  it('round-trips a confirm that selects TLS, and a negotiation failure', () => {
    const cc = encodeConnectionConfirm({ type: 'response', flags: 0x1f, selectedProtocol: PROTOCOL.SSL });
    expect(cc.toString('hex')).toBe('030000130ed000000000000' + '21f080001000000');
    expect(decodeConnectionConfirm(cc)).toEqual({ type: 'response', flags: 0x1f, selectedProtocol: 1 });
    const fail = encodeConnectionConfirm({ type: 'failure', failureCode: 5 });
    expect(decodeConnectionConfirm(fail)).toEqual({ type: 'failure', failureCode: 5 });
    expect(decodeConnectionConfirm(encodeConnectionConfirm({ type: 'legacy' }))).toEqual({ type: 'legacy' });
  });

  it('keeps a routing token and a correlation id', () => {
    const id = Buffer.alloc(16, 7);
    const r = {
      routingToken: '3640205228.15629.0000',
      negotiation: { flags: 0, requestedProtocols: 3 },
      correlationId: id,
    };
    const back = decodeConnectionRequest(encodeConnectionRequest(r));
    expect(back).toEqual({ ...r, negotiation: { flags: 0x08, requestedProtocols: 3 } });
  });

  it('refuses what is not a request: a confirm, a short frame, a bad length indicator, a cookie without CRLF', () => {
    expect(() => decodeConnectionRequest(encodeConnectionConfirm({ type: 'legacy' }))).toThrow(
      /not an X.224 Connection Request/,
    );
    expect(() => decodeConnectionRequest(XFREERDP_CR.subarray(0, 20))).toThrow(/truncated/);
    const badLi = Buffer.from(XFREERDP_CR);
    badLi[4] = 0x10;
    expect(() => decodeConnectionRequest(badLi)).toThrow(/length indicator/);
    const noCrlf = encodeConnectionRequest({ cookie: 'bob' });
    noCrlf[noCrlf.length - 1] = 0x41;
    expect(() => decodeConnectionRequest(noCrlf)).toThrow(RdpWireError);
    expect(() => encodeConnectionRequest({ cookie: 'a\r\nb' })).toThrow(/printable/);
  });

  it('TPKT: waits for more bytes, refuses another version', () => {
    expect(readTpkt(XFREERDP_CR.subarray(0, 3))).toBeUndefined();
    expect(readTpkt(XFREERDP_CR.subarray(0, 30))).toBeUndefined();
    expect(readTpkt(XFREERDP_CR)?.length).toBe(XFREERDP_CR.length);
    expect(() => readTpkt(Buffer.from([0x16, 3, 1]))).toThrow(/not a TPKT/);
  });
});
