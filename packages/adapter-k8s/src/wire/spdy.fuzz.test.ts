import zlib from 'node:zlib';
import {
  applyMutations,
  bytewise,
  chunks,
  cutsArb,
  fuzz,
  hostileBytes,
  mutationArb,
  onlyThrows,
} from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HEADERS,
  headerBlockOf,
  parseHeaderBlock,
  SPDY3_DICTIONARY,
  type SpdyFrame,
  SpdyFrameParser,
  SpdyHeaderDecoder,
  SpdyProtocolError,
  SYN_REPLY,
  SYN_STREAM,
} from './spdy.js';

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

function encodeFrame(f: SpdyFrame): Buffer {
  const h = Buffer.alloc(8);
  if (f.kind === 'control') {
    h.writeUInt16BE(0x8000 | 3, 0);
    h.writeUInt16BE(f.type, 2);
    h.writeUInt32BE(f.body.length, 4);
    h[4] = f.flags;
    return Buffer.concat([h, f.body]);
  }
  h.writeUInt32BE(f.streamId, 0);
  h.writeUInt32BE(f.data.length, 4);
  h[4] = f.fin ? 1 : 0;
  return Buffer.concat([h, f.data]);
}

const frame: fc.Arbitrary<SpdyFrame> = fc.oneof(
  fc.record({
    kind: fc.constant('data' as const),
    streamId: fc.nat({ max: 0x7fffffff }),
    fin: fc.boolean(),
    data: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  }),
  fc.record({
    kind: fc.constant('control' as const),
    type: fc.oneof(fc.constantFrom(SYN_STREAM, SYN_REPLY, HEADERS, 3, 4, 6, 7, 9), fc.nat({ max: 0xffff })),
    flags: fc.integer({ min: 0, max: 255 }),
    body: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  }),
);
const frames = fc.array(frame, { maxLength: 10 });
const stream = (fs: SpdyFrame[]) => Buffer.concat(fs.map(encodeFrame));

/** Header names as SPDY writes them (lowercase), values any UTF-8. */
const headers = fc.uniqueArray(
  fc.tuple(fc.stringMatching(/^[a-z0-9:_-]{1,20}$/), fc.string({ unit: 'grapheme', maxLength: 40 })),
  { selector: ([k]) => k, maxLength: 6 },
);
function block(hs: [string, string][]): Buffer {
  return Buffer.concat([
    u32(hs.length),
    ...hs.flatMap(([k, v]) => [
      u32(Buffer.byteLength(k, 'latin1')),
      Buffer.from(k, 'latin1'),
      u32(Buffer.byteLength(v)),
      Buffer.from(v),
    ]),
  ]);
}

/** One direction's header blocks through one zlib stream with the SPDY dictionary, a sync flush after each (as peers do). */
async function compressAll(blocks: Buffer[]): Promise<Buffer[]> {
  const z = zlib.createDeflate({ dictionary: SPDY3_DICTIONARY });
  const out: Buffer[] = [];
  let pending: Buffer[] = [];
  z.on('data', (d: Buffer) => pending.push(d));
  for (const b of blocks) {
    z.write(b);
    await new Promise<void>((r) => z.flush(zlib.constants.Z_SYNC_FLUSH, () => r()));
    out.push(Buffer.concat(pending));
    pending = [];
  }
  z.close();
  return out;
}

describe('SPDY frames (fuzz)', () => {
  it('reads back every data and control frame however the stream is split, one byte at a time included', () => {
    fuzz(
      fc.property(frames, cutsArb, fc.boolean(), (fs, cuts, oneByOne) => {
        const bytes = stream(fs);
        const p = new SpdyFrameParser();
        const got = (oneByOne ? bytewise(bytes) : chunks(bytes, cuts)).flatMap((c) => p.push(c));
        expect(got).toEqual(fs);
      }),
      { runs: 1000 },
    );
  });

  it('refuses a frame over the limit as soon as its header arrives', () => {
    fuzz(
      fc.property(frame, fc.nat(300), (f, limit) => {
        const bytes = encodeFrame(f);
        fc.pre(bytes.length - 8 > limit);
        expect(() => new SpdyFrameParser({ maxFrame: limit }).push(bytes.subarray(0, 8))).toThrow(
          SpdyProtocolError,
        );
      }),
      { runs: 500 },
    );
  });

  it('the frame parser and headerBlockOf throw only SpdyProtocolError on damaged streams', () => {
    fuzz(
      fc.property(hostileBytes(frames.map(stream)), cutsArb, (bytes, cuts) => {
        const p = new SpdyFrameParser({ maxFrame: 1 << 16 });
        const fs = onlyThrows(() => chunks(bytes, cuts).flatMap((c) => p.push(c)), SpdyProtocolError) ?? [];
        for (const f of fs) {
          if (f.kind !== 'control') continue;
          const hb = onlyThrows(() => headerBlockOf(f), SpdyProtocolError);
          if (hb) expect(hb.block.length).toBeLessThanOrEqual(f.body.length);
        }
      }),
      { runs: 3000 },
    );
  });
});

describe('SPDY header blocks (fuzz)', () => {
  it('parseHeaderBlock reads back every header block, and throws only SpdyProtocolError on damaged ones', () => {
    fuzz(
      fc.property(headers, (hs) => {
        expect(parseHeaderBlock(block(hs))).toEqual(new Map(hs));
      }),
      { runs: 1000 },
    );
    fuzz(
      fc.property(hostileBytes(headers.map(block)), (b) => {
        onlyThrows(() => parseHeaderBlock(b), SpdyProtocolError);
      }),
      { runs: 3000 },
    );
  });

  it('SpdyHeaderDecoder reads back each block of one compressed direction, in order', async () => {
    await fuzz(
      fc.asyncProperty(fc.array(headers, { minLength: 1, maxLength: 5 }), async (blocks) => {
        const compressed = await compressAll(blocks.map(block));
        const d = new SpdyHeaderDecoder();
        for (const [i, c] of compressed.entries()) expect(d.decode(c)).toEqual(new Map(blocks[i]));
      }),
      { runs: 200 },
    );
  });

  it('SpdyHeaderDecoder throws only SpdyProtocolError on damaged compressed blocks', async () => {
    await fuzz(
      fc.asyncProperty(
        fc.array(fc.tuple(headers, fc.array(mutationArb, { maxLength: 3 })), { minLength: 1, maxLength: 3 }),
        async (blocks) => {
          const compressed = await compressAll(blocks.map(([hs]) => block(hs)));
          const d = new SpdyHeaderDecoder({ maxTotal: 4096 });
          for (const [i, c] of compressed.entries()) {
            onlyThrows(() => d.decode(applyMutations(c, blocks[i]![1])), SpdyProtocolError);
          }
        },
      ),
      { runs: 200 },
    );
  });

  it('SpdyHeaderDecoder holds at most maxTotal bytes of headers, decompressed too (a zlib bomb is refused)', async () => {
    await fuzz(
      fc.asyncProperty(
        fc.integer({ min: 1024, max: 64 * 1024 }),
        fc.integer({ min: 1, max: 4 * 1024 * 1024 }),
        async (maxTotal, valueLength) => {
          const [c] = await compressAll([block([['x', 'a'.repeat(valueLength)]])]);
          const d = new SpdyHeaderDecoder({ maxTotal });
          const got = onlyThrows(() => d.decode(c!), SpdyProtocolError);
          if (got) expect(valueLength + 13).toBeLessThanOrEqual(maxTotal);
        },
      ),
      { runs: 50, maxRuns: 500 },
    );
  });
});
