import { createHash } from 'node:crypto';
import { clipBytes } from '@gatehouse/audit';
import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { ClientAudit, formatParams, QueryAuditor, type QueryRecord } from './query-audit.js';
import { PgWireError } from './wire/errors.js';

const t = (s: string) => ({ format: 'text' as const, value: Buffer.from(s) });

describe('QueryAuditor', () => {
  it('records a simple query as one record', () => {
    expect(new QueryAuditor().observe({ type: 'query', sql: 'select 1' })).toEqual([{ query: 'select 1' }]);
  });

  it('pairs Parse text with Bind parameters on the first Execute only', () => {
    const a = new QueryAuditor();
    expect(a.observe({ type: 'parse', statement: 'q', sql: 'select $1, $2', paramTypes: [] })).toEqual([]);
    expect(
      a.observe({
        type: 'bind',
        portal: '',
        statement: 'q',
        params: [t('1'), { format: 'binary', value: Buffer.from([0xde, 0xad]) }],
      }),
    ).toEqual([]);
    expect(a.observe({ type: 'execute', portal: '', maxRows: 1 })).toEqual([
      { query: 'select $1, $2', parameters: ['1', '\\xdead'], statement: 'q' },
    ]);
    // Fetching more rows of the same portal is not a new query.
    expect(a.observe({ type: 'execute', portal: '', maxRows: 1 })).toEqual([]);
    a.observe({ type: 'bind', portal: '', statement: 'q', params: [t('2'), null] });
    expect(a.observe({ type: 'execute', portal: '', maxRows: 0 })).toEqual([
      { query: 'select $1, $2', parameters: ['2', 'NULL'], statement: 'q' },
    ]);
  });

  it('names the unnamed statement by omission and forgets closed names', () => {
    const a = new QueryAuditor();
    a.observe({ type: 'parse', statement: '', sql: 'select now()', paramTypes: [] });
    a.observe({ type: 'bind', portal: '', statement: '', params: [] });
    expect(a.observe({ type: 'execute', portal: '', maxRows: 0 })).toEqual([
      { query: 'select now()', parameters: [] },
    ]);
    a.observe({ type: 'parse', statement: 's', sql: 'select 2', paramTypes: [] });
    a.observe({ type: 'close', target: 'statement', name: 's' });
    a.observe({ type: 'bind', portal: 'p', statement: 's', params: [] });
    expect(a.observe({ type: 'execute', portal: 'p', maxRows: 0 })[0]?.query).toBe(
      '<unknown prepared statement "s">',
    );
  });

  it("cuts long parameters, and all of a statement's together, keeping length and hash", () => {
    const long = 'x'.repeat(10_000);
    const [cut] = formatParams([t(long)], { maxQueryBytes: 32_768, maxParameterBytes: 4096 });
    expect(cut).toEqual({
      text: long.slice(0, 4096),
      length: 10_000,
      sha256: createHash('sha256').update(long).digest('hex'),
    });
    const many = formatParams([t('aaaa'), t('bbbb'), t('cc'), null], {
      maxQueryBytes: 6,
      maxParameterBytes: 4,
    });
    expect(many.map((p) => (typeof p === 'string' ? p : p.text))).toEqual(['aaaa', 'bb', '', 'NULL']);
  });
});

/** A FunctionCall message (pg-protocol has no serializer for it): oid 42, text args, text result. */
function functionCall(args: string[]): Buffer {
  const parts = [Buffer.from([0, 0, 0, 42, 0, 1, 0, 0])];
  const n = Buffer.alloc(2);
  n.writeUInt16BE(args.length);
  parts.push(n);
  for (const a of args) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(Buffer.byteLength(a));
    parts.push(len, Buffer.from(a));
  }
  parts.push(Buffer.from([0, 0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head[0] = 0x46;
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

describe('ClientAudit: large messages stream, and wait only at their last byte', () => {
  const limits = { maxQueryBytes: 40, maxParameterBytes: 8 };
  const MAX_BUFFERED = 64;
  const big = `select '${'x€'.repeat(30)}' as long`;
  const blob = Buffer.from(Array.from({ length: 20 }, (_, i) => i));
  const messages: [Buffer, QueryRecord[]][] = [
    [serialize.query('select 1'), [{ query: 'select 1' }]],
    [serialize.query(big), [{ query: clipBytes(Buffer.from(big), 40) }]],
    [serialize.copyData(Buffer.alloc(100, 0x61)), []],
    [serialize.parse({ name: 'big', text: big }), []],
    [serialize.bind({ portal: 'p', statement: 'big', values: ['short', 'y'.repeat(100), null, blob] }), []],
    [serialize.describe({ type: 'P', name: 'p' }), []],
    [
      serialize.execute({ portal: 'p' }),
      [
        {
          query: clipBytes(Buffer.from(big), 40),
          statement: 'big',
          parameters: [
            'short',
            clipBytes(Buffer.from('y'.repeat(100)), 8),
            'NULL',
            // 5 + 8 + 8 bytes of the 40-byte budget are spent: the blob keeps 8 bytes of its 20, as hex.
            clipBytes(blob, 8, (b) => `\\x${b.toString('hex')}`),
          ],
        },
      ],
    ],
    [
      functionCall(['z'.repeat(70), 'ok']),
      [{ query: '<function call oid 42>', parameters: [clipBytes(Buffer.from('z'.repeat(70)), 8), 'ok'] }],
    ],
    [serialize.sync(), []],
  ];
  const input = Buffer.concat(messages.map(([m]) => m));
  /** Where each message ends in the input. */
  const ends: number[] = [];
  for (const [m] of messages) ends.push((ends.at(-1) ?? 0) + m.length);

  const run = (cuts: number[]) => {
    const a = new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED });
    let at = 0;
    const out: Buffer[] = [];
    for (const cut of [...cuts, input.length]) {
      const r = a.push(input.subarray(at, cut));
      // The records of exactly the messages whose last byte is in this piece come with it,
      // so the relay holds those last bytes back until they are written.
      const due = messages.filter((_, i) => ends[i]! > at && ends[i]! <= cut).flatMap(([, recs]) => recs);
      expect(r.records).toEqual(due);
      out.push(r.out);
      at = cut;
    }
    expect(Buffer.concat(out)).toEqual(input);
  };

  it('gives the same records and bytes for a single cut at every point', () => {
    for (let cut = 0; cut <= input.length; cut++) run([cut]);
  });

  it('gives the same records and bytes for two cuts at every pair of message edges', () => {
    // Around each header (type, length, first body byte) and each last byte.
    const starts = [0, ...ends.slice(0, -1)];
    const edges = [...new Set(starts.flatMap((s) => [s, s + 1, s + 5]).concat(ends.map((e) => e - 1)))].sort(
      (x, y) => x - y,
    );
    for (const a of edges) for (const b of edges) if (b >= a) run([a, b]);
  });

  it('gives the same records and bytes one byte at a time', () => {
    run(Array.from({ length: input.length }, (_, i) => i));
  });

  it('forwards a chunk of whole messages as it came (no copy), with their records', () => {
    const a = new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED });
    const chunk = Buffer.concat([serialize.query('select 1'), serialize.sync()]);
    const r = a.push(chunk);
    expect(r.out).toBe(chunk);
    expect(r.records).toEqual([{ query: 'select 1' }]);
    // A chunk that ends inside a message is not forwarded as it came: its tail waits for the rest.
    const q = serialize.query('select 2');
    const head = a.push(Buffer.concat([chunk, q.subarray(0, 3)]));
    expect(head.out).toEqual(chunk);
    expect(a.push(q.subarray(3)).out).toEqual(q);
  });

  it('forwards the pieces of a streamed message before it is complete, holding nothing back but the last', () => {
    const a = new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED });
    const q = serialize.query(big);
    const first = a.push(q.subarray(0, q.length - 1));
    expect(first.out).toEqual(q.subarray(0, q.length - 1));
    expect(first.records).toEqual([]);
    const last = a.push(q.subarray(q.length - 1));
    expect(last.records).toEqual([{ query: clipBytes(Buffer.from(big), 40) }]);
  });

  it('refuses a streamed message that breaks the protocol, and an oversized Execute', () => {
    const q = serialize.query(big);
    const twoNuls = Buffer.from(q);
    twoNuls[20] = 0;
    expect(() => new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED }).push(twoNuls)).toThrow(
      /bytes after its contents/,
    );
    const longName = serialize.execute({ portal: 'p'.repeat(100) });
    expect(() => new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED }).push(longName)).toThrow(
      PgWireError,
    );
    const bindName = serialize.bind({ portal: 'n'.repeat(100), statement: '', values: [] });
    expect(() => new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED }).push(bindName)).toThrow(
      /string longer than 64 bytes/,
    );
  });

  it('without statement audit (db_audit: sessions) holds and decodes nothing, counts the statements run, still checks framing', () => {
    const a = new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED, statements: false });
    let unaudited = 0;
    const out: Buffer[] = [];
    // Every cut point: a header split across chunks is counted once.
    for (let at = 0; at < input.length; at += 7) {
      const r = a.push(input.subarray(at, at + 7));
      expect(r.records).toEqual([]);
      unaudited += r.unaudited;
      out.push(r.out);
    }
    expect(Buffer.concat(out)).toEqual(input);
    // Two Queries, one Execute, one FunctionCall.
    expect(unaudited).toBe(4);
    const unknown = Buffer.from([0x7a, 0, 0, 0, 4]);
    expect(() =>
      new ClientAudit({ limits, maxBufferedBytes: MAX_BUFFERED, statements: false }).push(unknown),
    ).toThrow(PgWireError);
  });
});
