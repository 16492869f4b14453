import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import type { PgWireError } from './errors.js';
import { isAuditedFrontendType, isKnownFrontendType } from './frontend.js';
import { MessageReader, type Segment } from './reader.js';

const rawOf = (segs: Segment[]) =>
  Buffer.concat(
    segs.map((s) =>
      s.kind === 'raw' || s.kind === 'body' ? s.bytes : s.kind === 'begin' ? s.header : s.raw,
    ),
  );

function frontReader(max?: number) {
  return new MessageReader({
    inspect: isAuditedFrontendType,
    accept: isKnownFrontendType,
    peer: 'the client',
    ...(max !== undefined ? { maxMessageBytes: max } : {}),
  });
}

const stream = Buffer.concat([
  serialize.query('select 1'),
  serialize.copyData(Buffer.alloc(3000, 0x61)),
  serialize.parse({ name: 'a', text: 'select $1' }),
  serialize.bind({ statement: 'a', values: ['x'] }),
  serialize.execute(),
  serialize.sync(),
  serialize.copyDone(),
]);

describe('MessageReader', () => {
  it('hands out inspected messages whole and passes the rest through, for every split point', () => {
    for (let split = 0; split <= stream.length; split += 29) {
      const r = frontReader();
      const segs = [...r.push(stream.subarray(0, split)), ...r.push(stream.subarray(split))];
      expect(rawOf(segs)).toEqual(stream);
      const types = segs
        .filter((s) => s.kind === 'message')
        .map((s) => String.fromCharCode((s as { type: number }).type));
      expect(types).toEqual(['Q', 'P', 'B', 'E']);
      expect(r.atBoundary).toBe(true);
    }
  });

  it('survives one byte at a time', () => {
    const r = frontReader();
    const segs: Segment[] = [];
    for (const b of stream) segs.push(...r.push(Buffer.from([b])));
    expect(rawOf(segs)).toEqual(stream);
    expect(segs.filter((s) => s.kind === 'message')).toHaveLength(4);
  });

  it('gives a chunk of uninspected messages back as one segment', () => {
    const r = frontReader();
    const chunk = Buffer.concat([
      serialize.sync(),
      serialize.flush(),
      serialize.copyData(Buffer.from('abc')),
    ]);
    const segs = r.push(chunk);
    expect(segs).toHaveLength(1);
    expect(segs[0]).toEqual({ kind: 'raw', bytes: chunk });
  });

  it('refuses a length below 4, an oversized length and unknown types', () => {
    expect(() => frontReader().push(Buffer.from('5100000003', 'hex'))).toThrow(/less than 4/);
    const big = Buffer.from('51', 'hex');
    const len = Buffer.alloc(4);
    len.writeInt32BE(1025, 0);
    expect(() => frontReader(1024).push(Buffer.concat([big, len]))).toThrow(/over the 1024-byte limit/);
    try {
      frontReader(1024).push(Buffer.concat([big, len]));
    } catch (err) {
      expect((err as PgWireError).sqlstate).toBe('54000');
      expect((err as PgWireError).reason).toBe('oversized');
    }
    expect(() => frontReader().push(Buffer.from('7a00000004', 'hex'))).toThrow(/unknown message type 'z'/);
  });

  it('tracks message boundaries', () => {
    const r = new MessageReader({ inspect: () => false, peer: 'the database' });
    const m = serialize.copyData(Buffer.alloc(100));
    r.push(m.subarray(0, 50));
    expect(r.atBoundary).toBe(false);
    r.push(m.subarray(50));
    expect(r.atBoundary).toBe(true);
  });
});
