import { bytewise, chunks, cutsArb, fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SshReader, WireError } from './reader.js';
import { decodeSftp, SFTP, SFTP_MAX_PACKET, SftpFramer, type SftpMessage } from './sftp.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n);
  return b;
};
const str = (s: string | Uint8Array) => {
  const d = Buffer.from(s as string);
  return Buffer.concat([u32(d.length), d]);
};
const packet = (payload: Buffer) => Buffer.concat([u32(payload.length), payload]);

const id = fc.nat({ max: 0xffffffff });
const path = fc.string({ unit: 'grapheme', maxLength: 30 });
const handle = fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b));
const offset = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

/** Audited SFTP messages with their payloads, as clients and servers write them. */
const message: fc.Arbitrary<{ payload: Buffer; msg: SftpMessage }> = fc.oneof(
  fc.tuple(id, path, id, fc.uint8Array({ maxLength: 12 })).map(([i, p, pflags, attrs]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.OPEN]), u32(i), str(p), u32(pflags), Buffer.from(attrs)]),
    msg: { type: 'open' as const, id: i, path: p, pflags },
  })),
  fc.tuple(id, handle).map(([i, h]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.CLOSE]), u32(i), str(h)]),
    msg: { type: 'close' as const, id: i, handle: h },
  })),
  fc.tuple(id, handle, offset, id).map(([i, h, o, length]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.READ]), u32(i), str(h), u64(o), u32(length)]),
    msg: { type: 'read' as const, id: i, handle: h, offset: o, length },
  })),
  fc.tuple(id, handle, offset, fc.uint8Array({ maxLength: 200 })).map(([i, h, o, data]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.WRITE]), u32(i), str(h), u64(o), str(data)]),
    msg: { type: 'write' as const, id: i, handle: h, offset: o, length: data.length },
  })),
  fc
    .tuple(
      fc.constantFrom(
        ['remove', SFTP.REMOVE],
        ['mkdir', SFTP.MKDIR],
        ['rmdir', SFTP.RMDIR],
        ['setstat', SFTP.SETSTAT],
      ) as fc.Arbitrary<['remove' | 'mkdir' | 'rmdir' | 'setstat', number]>,
      id,
      path,
      fc.uint8Array({ maxLength: 8 }),
    )
    .map(([[type, code], i, p, attrs]) => ({
      payload: Buffer.concat([Buffer.from([code]), u32(i), str(p), Buffer.from(attrs)]),
      msg: { type, id: i, path: p },
    })),
  fc.tuple(id, path, path).map(([i, p, t]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.RENAME]), u32(i), str(p), str(t)]),
    msg: { type: 'rename' as const, id: i, path: p, target: t },
  })),
  fc.tuple(id, id, fc.option(path, { nil: undefined })).map(([i, code, message]) => ({
    payload: Buffer.concat([
      Buffer.from([SFTP.STATUS]),
      u32(i),
      u32(code),
      ...(message === undefined ? [] : [str(message), str('en')]),
    ]),
    msg: { type: 'status' as const, id: i, code, message: message ?? '' },
  })),
  fc.tuple(id, handle).map(([i, h]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.HANDLE]), u32(i), str(h)]),
    msg: { type: 'handle' as const, id: i, handle: h },
  })),
  fc.tuple(id, fc.uint8Array({ maxLength: 200 })).map(([i, data]) => ({
    payload: Buffer.concat([Buffer.from([SFTP.DATA]), u32(i), str(data)]),
    msg: { type: 'data' as const, id: i, length: data.length },
  })),
  fc
    .tuple(
      fc
        .integer({ min: 0, max: 255 })
        .filter(
          (t) => !(Object.values(SFTP) as number[]).includes(t) || t === SFTP.INIT || t === SFTP.VERSION,
        ),
      fc.uint8Array({ maxLength: 20 }),
    )
    .map(([t, rest]) => ({
      payload: Buffer.concat([Buffer.from([t]), rest]),
      msg: { type: 'other' as const, packetType: t },
    })),
);

const stream = fc.array(message, { maxLength: 10 });

describe('SFTP (fuzz)', () => {
  it('decodeSftp reads back every audited request and reply', () => {
    fuzz(
      fc.property(message, ({ payload, msg }) => {
        expect(decodeSftp(payload)).toEqual(msg);
      }),
      { runs: 2000 },
    );
  });

  it('SftpFramer hands out the same packets however the stream is split, one byte at a time included', () => {
    fuzz(
      fc.property(stream, cutsArb, fc.boolean(), (msgs, cuts, oneByOne) => {
        const bytes = Buffer.concat(msgs.map((m) => packet(m.payload)));
        const framer = new SftpFramer();
        const out = (oneByOne ? bytewise(bytes) : chunks(bytes, cuts)).flatMap((c) => framer.push(c));
        expect(out.map((p) => Buffer.from(p))).toEqual(msgs.map((m) => m.payload));
      }),
      { runs: 1000 },
    );
  });

  it(`refuses a zero or over-${SFTP_MAX_PACKET}-byte packet length as soon as it arrives`, () => {
    fuzz(
      fc.property(
        fc.oneof(fc.constant(0), fc.integer({ min: SFTP_MAX_PACKET + 1, max: 0xffffffff })),
        (n) => {
          expect(() => new SftpFramer().push(u32(n))).toThrow(WireError);
        },
      ),
      { runs: 500 },
    );
  });

  it('the framer and decodeSftp throw only WireError on damaged streams', () => {
    fuzz(
      fc.property(
        hostileBytes(stream.map((ms) => Buffer.concat(ms.map((m) => packet(m.payload))))),
        cutsArb,
        (bytes, cuts) => {
          onlyThrows(() => {
            const framer = new SftpFramer();
            for (const c of chunks(bytes, cuts))
              for (const p of framer.push(c)) onlyThrows(() => decodeSftp(p), WireError);
          }, WireError);
          onlyThrows(() => decodeSftp(bytes), WireError);
        },
      ),
      { runs: 3000 },
    );
  });

  it('SshReader throws only WireError, whatever it is asked to read from whatever bytes', () => {
    fuzz(
      fc.property(
        hostileBytes(message.map((m) => m.payload)),
        fc.array(fc.constantFrom('byte', 'u32', 'u64', 'string', 'text'), { maxLength: 10 }),
        (bytes, reads) => {
          const r = new SshReader(bytes);
          for (const op of reads) {
            if (onlyThrows(() => r[op as 'byte'](), WireError) === undefined) break;
            expect(r.remaining).toBeGreaterThanOrEqual(0);
            expect(r.offset + r.remaining).toBe(bytes.length);
          }
        },
      ),
      { runs: 2000 },
    );
  });
});
