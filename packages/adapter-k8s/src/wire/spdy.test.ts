import zlib from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import {
  HEADERS,
  headerBlockOf,
  parseHeaderBlock,
  SPDY3_DICTIONARY,
  SpdyFrameParser,
  SpdyHeaderDecoder,
  SpdyProtocolError,
  SYN_REPLY,
  SYN_STREAM,
} from './spdy.js';

/** An uncompressed header block. */
function block(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  parts.push(u32(Object.keys(headers).length));
  for (const [k, v] of Object.entries(headers)) {
    parts.push(u32(Buffer.byteLength(k)), Buffer.from(k), u32(Buffer.byteLength(v)), Buffer.from(v));
  }
  return Buffer.concat(parts);
}

/** Compresses blocks in one zlib stream with the SPDY dictionary, as a peer does (one flush per block). */
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

function control(type: number, body: Buffer, flags = 0): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(0x8000 | 3, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(body.length, 4);
  h[4] = flags;
  return Buffer.concat([h, body]);
}

function data(streamId: number, payload: Buffer, fin = false): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(streamId, 0);
  h.writeUInt32BE(payload.length, 4);
  h[4] = fin ? 1 : 0;
  return Buffer.concat([h, payload]);
}

function synStream(streamId: number, compressed: Buffer): Buffer {
  const b = Buffer.alloc(10);
  b.writeUInt32BE(streamId, 0);
  return control(SYN_STREAM, Buffer.concat([b, compressed]));
}

describe('SpdyFrameParser', () => {
  it('splits control and data frames, across any chunking', () => {
    const bytes = Buffer.concat([
      control(4, Buffer.alloc(12)), // SETTINGS
      data(3, Buffer.from('hello')),
      data(5, Buffer.alloc(0), true),
    ]);
    for (const size of [1, 3, 8, bytes.length]) {
      const p = new SpdyFrameParser();
      const frames = [];
      for (let i = 0; i < bytes.length; i += size) frames.push(...p.push(bytes.subarray(i, i + size)));
      expect(frames).toEqual([
        { kind: 'control', type: 4, flags: 0, body: Buffer.alloc(12) },
        { kind: 'data', streamId: 3, fin: false, data: Buffer.from('hello') },
        { kind: 'data', streamId: 5, fin: true, data: Buffer.alloc(0) },
      ]);
    }
  });

  it('refuses another SPDY version and frames over the limit', () => {
    const v2 = control(1, Buffer.alloc(10));
    v2.writeUInt16BE(0x8000 | 2, 0);
    expect(() => new SpdyFrameParser().push(v2)).toThrow(/version 2 is not 3/);
    expect(() => new SpdyFrameParser({ maxFrame: 16 }).push(data(1, Buffer.alloc(17)))).toThrow(
      SpdyProtocolError,
    );
  });

  it('finds the header block of SYN_STREAM, SYN_REPLY and HEADERS, and refuses a truncated one', () => {
    const body = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.alloc(6), Buffer.from('xyz')]);
    expect(headerBlockOf({ type: SYN_STREAM, body })).toEqual({ streamId: 7, block: Buffer.from('xyz') });
    expect(headerBlockOf({ type: SYN_REPLY, body: Buffer.from([0, 0, 0, 9, 1]) })).toEqual({
      streamId: 9,
      block: Buffer.from([1]),
    });
    expect(headerBlockOf({ type: HEADERS, body: Buffer.from([0, 0, 0, 9]) })?.block.length).toBe(0);
    expect(headerBlockOf({ type: 4, body })).toBeUndefined();
    expect(() => headerBlockOf({ type: SYN_STREAM, body: Buffer.alloc(5) })).toThrow(/truncated/);
  });
});

describe('SpdyFrameParser work', () => {
  it('copies a large frame a bounded number of times however finely it arrives (re-copied its whole buffer on every chunk)', () => {
    const frame = data(1, Buffer.alloc(4 << 20, 7));
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const p = new SpdyFrameParser();
      const frames = [];
      for (let i = 0; i < frame.length; i += 4096) frames.push(...p.push(frame.subarray(i, i + 4096)));
      expect(frames).toHaveLength(1);
      const copied = concat.mock.results.reduce((n, r) => n + (r.value as Buffer).length, 0);
      expect(copied).toBeLessThanOrEqual(2 * frame.length);
    } finally {
      concat.mockRestore();
    }
  });
});

describe('SpdyHeaderDecoder', () => {
  it('decodes successive blocks that share one zlib context with the SPDY/3 dictionary', async () => {
    const blocks = [
      block({ streamtype: 'error' }),
      block({ streamtype: 'stdout', 'content-type': 'text/plain' }),
      block({ streamtype: 'stderr' }),
    ];
    const compressed = await compressAll(blocks);
    const d = new SpdyHeaderDecoder();
    expect([...d.decode(compressed[0]!)]).toEqual([['streamtype', 'error']]);
    expect([...d.decode(compressed[1]!)]).toEqual([
      ['streamtype', 'stdout'],
      ['content-type', 'text/plain'],
    ]);
    expect([...d.decode(compressed[2]!)]).toEqual([['streamtype', 'stderr']]);
    // The frames as a client sends them: the parser hands the blocks to the decoder.
    const frames = new SpdyFrameParser().push(
      Buffer.concat(compressed.map((c, i) => synStream(i * 2 + 1, c))),
    );
    const again = new SpdyHeaderDecoder();
    const types = frames.map((f) => {
      if (f.kind !== 'control') throw new Error('expected control frames');
      return again.decode(headerBlockOf(f)!.block).get('streamtype');
    });
    expect(types).toEqual(['error', 'stdout', 'stderr']);
  });

  it('refuses garbage and more header bytes than its limit', async () => {
    expect(() => new SpdyHeaderDecoder().decode(Buffer.from('not zlib at all'))).toThrow(
      /does not decompress/,
    );
    const [big] = await compressAll([block({ streamtype: 'x'.repeat(5000) })]);
    expect(() => new SpdyHeaderDecoder({ maxTotal: 8 }).decode(big!)).toThrow(/exceed 8 bytes/);
  });

  it('refuses header blocks that inflate past its limit (a few KiB that inflate to 4 MiB were accepted)', async () => {
    // fuzz counterexample: maxTotal 1024, a block inflating to 1025 bytes was accepted; the
    // limit only applied to the compressed bytes.
    const [bomb] = await compressAll([block({ x: 'a'.repeat(4 * 1024 * 1024) })]);
    expect(bomb!.length).toBeLessThan(8 * 1024);
    expect(() => new SpdyHeaderDecoder({ maxTotal: 64 * 1024 }).decode(bomb!)).toThrow(
      /exceed 65536 bytes decompressed/,
    );
    const [small] = await compressAll([block({ x: 'a'.repeat(1000) })]);
    expect(new SpdyHeaderDecoder({ maxTotal: 1024 }).decode(small!).get('x')).toHaveLength(1000);
  });
});

describe('parseHeaderBlock', () => {
  it('reads names (lower-cased) and values, and refuses lengths that lie', () => {
    expect([...parseHeaderBlock(block({ StreamType: 'stdin', port: '80' }))]).toEqual([
      ['streamtype', 'stdin'],
      ['port', '80'],
    ]);
    const lying = block({ a: 'b' });
    lying.writeUInt32BE(1000, 4 + 4 + 1);
    expect(() => parseHeaderBlock(lying)).toThrow(/truncated/);
    expect(() => parseHeaderBlock(Buffer.from([0, 0, 0, 2]))).toThrow(/truncated/);
  });
});
