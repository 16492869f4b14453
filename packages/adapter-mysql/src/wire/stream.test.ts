import { createHash } from 'node:crypto';
import { type AuditText, clipBytes, TextDigest } from '@gatehouse/audit';
import { describe, expect, it } from 'vitest';
import { CommandReader, encodePacket, MysqlWireError } from './codec.js';
import { COM, MAX_FRAME_PAYLOAD, TYPE } from './constants.js';
import { renderMysql } from './params.js';
import { CommandStream, decodeStreamed, type StatementLookup, type StreamedCommand } from './stream.js';

const limits = { maxQueryBytes: 40, maxParameterBytes: 8 };
const MAX_BUFFERED = 64;

/** A statement 7 with (VAR_STRING, LONG, BLOB) parameters, the last sent as long data. */
function statements(): StatementLookup & { digest: TextDigest } {
  const digest = new TextDigest(8);
  return {
    digest,
    execute: (id) =>
      id === 7
        ? { numParams: 3, types: undefined, longData: new Map<number, AuditText>([[2, 'long']]) }
        : undefined,
    longData: (id, param) => (id === 7 && param === 2 ? digest : undefined),
  };
}

const cmd = (command: number, ...parts: (Buffer | string)[]) =>
  Buffer.concat([Buffer.from([command]), ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p))]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const lenenc = (n: number) => (n < 0xfb ? Buffer.from([n]) : Buffer.from([0xfc, n & 0xff, n >> 8]));

const bigQuery = `SELECT '${'x€'.repeat(40)}'; USE \`other\``;
const bigValue = 'v'.repeat(300);
const executePayload = cmd(
  COM.STMT_EXECUTE,
  u32(7),
  Buffer.from([0]),
  u32(1),
  Buffer.from([0]), // NULL bitmap: none
  Buffer.from([1, TYPE.VAR_STRING, 0, TYPE.LONG, 0, TYPE.BLOB, 0]),
  lenenc(bigValue.length),
  bigValue,
  u32(42),
);
const payloads = [
  cmd(COM.QUERY, 'SELECT 1'),
  cmd(COM.QUERY, bigQuery),
  cmd(COM.PING),
  cmd(COM.STMT_PREPARE, `SELECT ?, ?, ? FROM ${'t'.repeat(100)}`),
  cmd(COM.STMT_SEND_LONG_DATA, u32(7), Buffer.from([2, 0]), 'z'.repeat(200)),
  executePayload,
  cmd(COM.QUIT),
];

type Seen = { packet: Buffer } | { streamed: StreamedCommand; replySeq: number };

/** Feeds `input` cut at `cuts` through CommandReader + CommandStream as the relay does. */
function drive(input: Buffer, cuts: number[], lookup: StatementLookup = statements()) {
  const reader = new CommandReader({ maxPacketBytes: 1 << 30, maxBufferedBytes: MAX_BUFFERED });
  const seen: Seen[] = [];
  const raw: Buffer[] = [];
  let stream: CommandStream | undefined;
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    for (const seg of reader.push(input.subarray(at, cut))) {
      if (seg.kind === 'packet') {
        raw.push(seg.packet.raw);
        seen.push({ packet: Buffer.from(seg.packet.payload) });
        continue;
      }
      raw.push(seg.raw);
      if (seg.first) stream = new CommandStream(limits, lookup, MAX_BUFFERED);
      expect(stream).toBeDefined();
      stream?.push(seg.payload);
      if (seg.end) {
        seen.push({ streamed: (stream as CommandStream).end(), replySeq: (seg.seq + 1) & 0xff });
        stream = undefined;
      }
    }
    at = cut;
  }
  // Buffer.equals: a deep equality of 16 MiB buffers would walk them key by key.
  expect(Buffer.concat(raw).equals(input)).toBe(true);
  return seen;
}

/** What each packet must come out as: whole when small, else the streaming decoder's result. */
function expected(packets: { payload: Buffer; frames: number }[]): Seen[] {
  return packets.map(({ payload, frames }) =>
    payload.length <= MAX_BUFFERED && frames === 1
      ? { packet: payload }
      : { streamed: decodeStreamed(payload, limits, statements(), MAX_BUFFERED), replySeq: frames & 0xff },
  );
}

describe('CommandReader + CommandStream: large commands stream, decoded on the way', () => {
  const input = Buffer.concat(payloads.map((p) => encodePacket(0, p)));
  const want = expected(payloads.map((payload) => ({ payload, frames: 1 })));

  it('decodes what the checks and the audit need, and nothing whole', () => {
    const [, query, , prepare, , execute] = want as { streamed: StreamedCommand }[];
    expect(query?.streamed).toEqual({
      type: 'query',
      sql: clipBytes(Buffer.from(bigQuery), 40),
      check: { useDatabases: ['other'], loadDataLocal: false, unchecked: undefined },
    });
    expect(prepare?.streamed).toMatchObject({ type: 'prepare', sql: { length: 120 } });
    expect(execute?.streamed).toEqual({
      type: 'execute',
      stmtId: 7,
      params: {
        values: [clipBytes(Buffer.from(bigValue), 8, renderMysql), '42', 'long'],
        types: [TYPE.VAR_STRING, TYPE.LONG, TYPE.BLOB],
      },
    });
  });

  it('gives the same result for a single cut at every point', () => {
    for (let cut = 0; cut <= input.length; cut++) expect(drive(input, [cut])).toEqual(want);
  });

  it('gives the same result one byte at a time, and feeds long data to its digest', () => {
    const lookup = statements();
    expect(
      drive(
        input,
        Array.from({ length: input.length }, (_, i) => i),
        lookup,
      ),
    ).toEqual(want);
    expect(lookup.digest.result()).toEqual(clipBytes(Buffer.from('z'.repeat(200)), 8));
  });

  it('streams a packet continued over 16 MiB frames, including one that ends with an empty frame', () => {
    for (const size of [MAX_FRAME_PAYLOAD + 10, MAX_FRAME_PAYLOAD]) {
      const text = `SELECT '${'q'.repeat(size - 10)}'`;
      const payload = cmd(COM.QUERY, text);
      expect(payload.length).toBe(size);
      const packet = encodePacket(0, payload);
      const frames = 2;
      const both = Buffer.concat([packet, encodePacket(0, cmd(COM.PING))]);
      const f = 4 + MAX_FRAME_PAYLOAD; // where the second frame's header starts
      const want2 = [
        {
          streamed: {
            type: 'query',
            sql: {
              text: text.slice(0, 40),
              length: text.length,
              sha256: createHash('sha256').update(text).digest('hex'),
            },
            check: { useDatabases: [], loadDataLocal: false, unchecked: undefined },
          },
          replySeq: frames,
        },
        { packet: cmd(COM.PING) },
      ];
      for (const cut of [
        0,
        3,
        4,
        5,
        f - 1,
        f,
        f + 1,
        f + 3,
        f + 4,
        f + 5,
        packet.length - 1,
        packet.length,
      ]) {
        expect(drive(both, [cut])).toEqual(want2);
      }
      expect(drive(both, [5, f + 2])).toEqual(want2);
    }
  });

  it('refuses a large command that has no business being large, and a continuation out of sequence', () => {
    const big = encodePacket(0, cmd(COM.CHANGE_USER, 'u'.repeat(100)));
    expect(() => drive(big, [])).toThrow(/command 0x11 of more than 64 bytes is refused/);
    const frames = encodePacket(0, cmd(COM.QUERY, 'a'.repeat(MAX_FRAME_PAYLOAD)));
    frames[4 + MAX_FRAME_PAYLOAD + 3] = 9;
    expect(() => drive(frames, [])).toThrow(MysqlWireError);
    const over = new CommandReader({ maxPacketBytes: 100, maxBufferedBytes: 10 });
    expect(() => over.push(encodePacket(0, Buffer.alloc(101)))).toThrow(/exceeds the limit of 100/);
  });
});
