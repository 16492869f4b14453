import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RdpWireError, readTpkt } from './tpkt.js';
import {
  type ConnectionConfirm,
  type ConnectionRequest,
  decodeConnectionConfirm,
  decodeConnectionRequest,
  encodeConnectionConfirm,
  encodeConnectionRequest,
} from './x224.js';

const line = fc.string({ maxLength: 40 }).filter((s) => /^[\x20-\x7e]*$/.test(s));
const request: fc.Arbitrary<ConnectionRequest> = fc
  .record(
    {
      cookie: line,
      routingToken: line,
      negotiation: fc.record({ flags: fc.integer({ min: 0, max: 0xff }), requestedProtocols: fc.nat() }),
      correlationId: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
    },
    { requiredKeys: [] },
  )
  .map((r) => {
    // A request carries one cookie line, and correlation info only after a negotiation request.
    const out: ConnectionRequest = { ...r };
    if (out.routingToken !== undefined) delete out.cookie;
    if (!out.negotiation) delete out.correlationId;
    if (out.negotiation) {
      out.negotiation = {
        ...out.negotiation,
        flags: out.correlationId ? out.negotiation.flags | 0x08 : out.negotiation.flags & ~0x08,
      };
    }
    return out;
  });
const confirm: fc.Arbitrary<ConnectionConfirm> = fc.oneof(
  fc.record({
    type: fc.constant('response' as const),
    flags: fc.integer({ min: 0, max: 0xff }),
    selectedProtocol: fc.nat(),
  }),
  fc.record({ type: fc.constant('failure' as const), failureCode: fc.nat() }),
  fc.constant({ type: 'legacy' as const }),
);

describe('X.224 codec (fuzz)', () => {
  it('round-trips every request and confirm', () => {
    fuzz(
      fc.property(request, (r) => {
        expect(decodeConnectionRequest(encodeConnectionRequest(r))).toEqual(r);
      }),
    );
    fuzz(
      fc.property(confirm, (c) => {
        expect(decodeConnectionConfirm(encodeConnectionConfirm(c))).toEqual(c);
      }),
    );
  });

  it('hostile bytes only ever raise RdpWireError, and what decodes re-encodes to the same request', () => {
    fuzz(
      fc.property(hostileBytes(request.map(encodeConnectionRequest)), (bytes) => {
        const r = onlyThrows(() => decodeConnectionRequest(bytes), RdpWireError);
        // What decodes survives re-encoding (the TPDU references, which RDP leaves at 0, are not kept).
        if (r) expect(decodeConnectionRequest(encodeConnectionRequest(r))).toEqual(r);
      }),
    );
    fuzz(
      fc.property(hostileBytes(confirm.map(encodeConnectionConfirm)), (bytes) => {
        onlyThrows(() => decodeConnectionConfirm(bytes), RdpWireError);
        onlyThrows(() => readTpkt(bytes), RdpWireError);
      }),
    );
  });
});
