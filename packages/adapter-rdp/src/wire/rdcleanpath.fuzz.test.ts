import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeRequest,
  decodeResponse,
  derMessageLength,
  encodeRequest,
  encodeResponse,
  MAX_RDCLEANPATH_REQUEST,
  type RDCleanPathRequest,
  type RDCleanPathResponse,
} from './rdcleanpath.js';
import { RdpWireError } from './tpkt.js';

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const request: fc.Arbitrary<RDCleanPathRequest> = fc.record(
  {
    destination: fc.string({ maxLength: 64 }),
    proxyAuth: fc.string({ maxLength: 64 }),
    preconnectionBlob: fc.string({ maxLength: 32 }),
    x224: bytes(64),
  },
  { requiredKeys: ['destination', 'proxyAuth', 'x224'] },
);
const u16 = fc.integer({ min: 0, max: 0xffff });
const response: fc.Arbitrary<RDCleanPathResponse> = fc.oneof(
  fc.record({
    type: fc.constant('response' as const),
    // A confirm and a chain are never empty (the encoder leaves an empty SEQUENCE OF out, and the
    // decoder then refuses the response as incomplete, which is right for a gateway's answer).
    x224: bytes(32).filter((b) => b.length > 0),
    serverCertChain: fc.array(bytes(128), { minLength: 1, maxLength: 3 }),
    serverAddr: fc.string({ maxLength: 40 }),
  }),
  fc.record(
    {
      type: fc.constant('error' as const),
      error: fc.record(
        {
          errorCode: u16,
          httpStatusCode: u16,
          wsaLastError: u16,
          tlsAlertCode: fc.integer({ min: 0, max: 255 }),
        },
        { requiredKeys: ['errorCode'] },
      ),
      x224: bytes(32),
    },
    { requiredKeys: ['type', 'error'] },
  ),
);

describe('RDCleanPath codec (fuzz)', () => {
  it('round-trips requests and responses, and frames them by their DER header', () => {
    fuzz(
      fc.property(request, (r) => {
        const der = encodeRequest(r);
        expect(derMessageLength(der, MAX_RDCLEANPATH_REQUEST)).toBe(der.length);
        expect(decodeRequest(der)).toEqual(r);
      }),
    );
    fuzz(
      fc.property(response, (r) => {
        expect(decodeResponse(encodeResponse(r))).toEqual(r);
      }),
    );
  });

  it('hostile bytes only ever raise RdpWireError', () => {
    fuzz(
      fc.property(hostileBytes(request.map(encodeRequest)), (b) => {
        onlyThrows(() => derMessageLength(b, MAX_RDCLEANPATH_REQUEST), RdpWireError);
        onlyThrows(() => decodeRequest(b), RdpWireError);
      }),
    );
    fuzz(
      fc.property(hostileBytes(response.map(encodeResponse)), (b) => {
        onlyThrows(() => decodeResponse(b), RdpWireError);
      }),
    );
  });
});
