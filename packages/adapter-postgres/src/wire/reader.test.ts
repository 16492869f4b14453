import { randomBytes } from 'node:crypto';
import { DEFAULT_AUDIT_TEXT_LIMITS } from '@gatehouse/audit';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { ClientAudit } from '../query-audit.js';
import { PgWireError } from './errors.js';
import {
  decodeFrontendMessage,
  F,
  isAuditedFrontendType,
  isKnownFrontendType,
  readStartupPacket,
} from './frontend.js';
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

describe('fuzz: random and mutated bytes only ever raise PgWireError', () => {
  const onlyWireErrors = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof PgWireError)) throw err;
    }
  };

  it('MessageReader + decodeFrontendMessage', () => {
    for (let i = 0; i < 3000; i++) {
      const input = i % 2 === 0 ? randomBytes(1 + (i % 200)) : mutate(stream);
      onlyWireErrors(() => {
        const r = frontReader(1 << 20);
        for (const s of r.push(input)) if (s.kind === 'message') decodeFrontendMessage(s.type, s.body);
      });
    }
  });

  it('ClientAudit streaming everything over 16 bytes', () => {
    for (let i = 0; i < 3000; i++) {
      const input = i % 2 === 0 ? randomBytes(1 + (i % 200)) : mutate(stream);
      onlyWireErrors(() => {
        const a = new ClientAudit({ limits: DEFAULT_AUDIT_TEXT_LIMITS, maxBufferedBytes: 16 });
        for (let at = 0; at < input.length; at += 7) a.push(input.subarray(at, at + 7));
      });
    }
  });

  it('readStartupPacket', () => {
    const base = serialize.startup({ user: 'alice', database: 'app' });
    for (let i = 0; i < 3000; i++) {
      const input = i % 2 === 0 ? randomBytes(1 + (i % 64)) : mutate(base);
      onlyWireErrors(() => readStartupPacket(input));
    }
  });

  it('decodes every message type from random bodies', () => {
    for (const t of [F.Query, F.Parse, F.Bind, F.Execute, F.Close, F.FunctionCall]) {
      for (let i = 0; i < 500; i++) onlyWireErrors(() => decodeFrontendMessage(t, randomBytes(i % 40)));
    }
  });
});

function mutate(b: Buffer): Buffer {
  const out = Buffer.from(b);
  const n = 1 + Math.floor(Math.random() * 4);
  for (let i = 0; i < n; i++) out[Math.floor(Math.random() * out.length)] = Math.floor(Math.random() * 256);
  return Math.random() < 0.3 ? out.subarray(0, Math.floor(Math.random() * out.length)) : out;
}
