import { bytewise, chunks, cutsArb, fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type ChangeUser,
  encodeChangeUser,
  encodeErr,
  encodeHandshakeResponse,
  encodeHandshakeV10,
  encodeOk,
  encodePacket,
  encodeSslRequest,
  type HandshakeResponse,
  type HandshakeV10,
  isErr,
  isOk,
  isSslRequest,
  lenencBytes,
  MysqlWireError,
  type Packet,
  PacketDecoder,
  parseAuthSwitch,
  parseCommand,
  parseErr,
  parseHandshakeResponse,
  parseHandshakeV10,
  parsePrepareOk,
  Reader,
} from './codec.js';
import { CLIENT, COM, GATEWAY_CAPABILITIES, MAX_FRAME_PAYLOAD } from './constants.js';

const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.nat({ max: 0xffffffff });
/** Text without NUL (it ends a string on the wire). */
const str = fc.string({ unit: 'grapheme', maxLength: 20 }).filter((s) => !s.includes('\0'));
const latin1 = fc.string({ unit: 'binary-ascii', maxLength: 20 }).filter((s) => !s.includes('\0'));
const bytes = (max = 40) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const noNul = (max = 40) => bytes(max).map((b) => Buffer.from(b.filter((x) => x !== 0)));
/** A connect-attributes block: lenenc total length, then its bytes (opaque to the gateway). */
const attrsBlock = bytes(300).map(lenencBytes);
const caps = (always: number) => u32.map((c) => (c | always) >>> 0);

const packets = fc.array(fc.tuple(u8, bytes(300)), { maxLength: 10 });
const streamOf = (ps: [number, Buffer][]) => Buffer.concat(ps.map(([s, p]) => encodePacket(s, p)));

function decodeAll(max: number, pieces: Buffer[]): { out: Packet[]; d: PacketDecoder } {
  const d = new PacketDecoder({ maxPacketBytes: max });
  return { out: pieces.flatMap((p) => d.push(p)), d };
}

const view = (ps: Packet[]) => ps.map((p) => ({ seq: p.seq, payload: Buffer.from(p.payload) }));

describe('MySQL PacketDecoder (fuzz)', () => {
  it('hands out the same packets, raw bytes in order, however the stream is split (and one byte at a time)', () => {
    fuzz(
      fc.property(packets, cutsArb, fc.boolean(), (ps, cuts, bytewiseFeed) => {
        const stream = streamOf(ps);
        const { out, d } = decodeAll(4096, bytewiseFeed ? bytewise(stream) : chunks(stream, cuts));
        expect(view(out)).toEqual(ps.map(([seq, payload]) => ({ seq, payload })));
        expect(Buffer.concat(out.map((p) => p.raw))).toEqual(stream);
        expect(d.buffered).toBe(0);
      }),
      { runs: 1000 },
    );
  });

  it('joins 16 MiB continuation frames into one packet, whatever the split', () => {
    fuzz(
      fc.property(
        fc.constantFrom(
          MAX_FRAME_PAYLOAD - 1,
          MAX_FRAME_PAYLOAD,
          MAX_FRAME_PAYLOAD + 1,
          2 * MAX_FRAME_PAYLOAD + 7,
        ),
        u8,
        u8,
        cutsArb,
        (len, seq, fill, cuts) => {
          const payload = Buffer.alloc(len, fill);
          const stream = encodePacket(seq, payload);
          const { out } = decodeAll(3 * MAX_FRAME_PAYLOAD, chunks(stream, cuts));
          expect(out).toHaveLength(1);
          expect(out[0]!.seq).toBe(seq);
          expect(out[0]!.payload.equals(payload)).toBe(true);
          expect(out[0]!.raw.equals(stream)).toBe(true);
        },
      ),
      { runs: 4, maxRuns: 40 },
    );
  });

  it('refuses a declared size over the limit as soon as the header arrives', () => {
    fuzz(
      fc.property(
        fc.integer({ min: 0, max: MAX_FRAME_PAYLOAD - 1 }),
        fc.integer({ min: 0, max: 1 << 16 }),
        u8,
        (len, max, seq) => {
          const h = Buffer.alloc(4);
          h.writeUIntLE(len, 0, 3);
          h[3] = seq;
          const d = new PacketDecoder({ maxPacketBytes: max });
          if (len <= max) expect(onlyThrows(() => d.push(h), MysqlWireError)).toBeDefined();
          else
            expect(() => d.push(h)).toThrow(
              expect.objectContaining({ name: 'MysqlWireError', reason: 'too_large' }),
            );
        },
      ),
      { runs: 1000 },
    );
  });

  it('throws only MysqlWireError on damaged streams; takeRemainder keeps what follows a packet', () => {
    fuzz(
      fc.property(hostileBytes(packets.map(streamOf)), cutsArb, (stream, cuts) => {
        onlyThrows(() => decodeAll(1024, chunks(stream, cuts)), MysqlWireError);
        const d = new PacketDecoder({ maxPacketBytes: 1 << 20 });
        d.feed(stream);
        const first = onlyThrows(() => d.read(), MysqlWireError);
        if (first && first.raw.length === first.payload.length + 4) {
          expect(Buffer.concat([first.raw, d.takeRemainder()])).toEqual(stream);
        }
      }),
      { runs: 2000 },
    );
  });
});

const handshakeV10: fc.Arbitrary<HandshakeV10> = fc.record({
  serverVersion: str,
  connectionId: u32,
  authData: fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => Buffer.from(b)),
  capabilities: caps(CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH),
  charset: u8,
  status: u16,
  authPlugin: latin1,
});

const handshakeResponse: fc.Arbitrary<HandshakeResponse> = caps(CLIENT.PROTOCOL_41).chain((capabilities) =>
  fc.record({
    capabilities: fc.constant(capabilities),
    maxPacket: u32,
    charset: u8,
    user: str,
    authResponse:
      capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA
        ? bytes(300)
        : capabilities & CLIENT.SECURE_CONNECTION
          ? bytes(255)
          : noNul(),
    database: capabilities & CLIENT.CONNECT_WITH_DB ? str : fc.constant(undefined),
    authPlugin: capabilities & CLIENT.PLUGIN_AUTH ? latin1 : fc.constant(undefined),
    attrs: capabilities & CLIENT.CONNECT_ATTRS ? attrsBlock : fc.constant(undefined),
  }),
);

const changeUser = fc.tuple(caps(0), fc.boolean()).chain(([capabilities, withCharset]) =>
  fc
    .record({
      user: str,
      authResponse: capabilities & CLIENT.SECURE_CONNECTION ? bytes(255) : noNul(),
      database: str,
      charset: withCharset ? u16 : fc.constant(undefined),
      authPlugin: withCharset && capabilities & CLIENT.PLUGIN_AUTH ? latin1 : fc.constant(undefined),
      attrs: withCharset && capabilities & CLIENT.CONNECT_ATTRS ? attrsBlock : fc.constant(undefined),
    })
    .map((change) => ({ capabilities, change: change as ChangeUser })),
);

const prepareOk = fc.tuple(u32, u16, u16, u16).map(([stmtId, numColumns, numParams, warnings]) => {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(stmtId, 1);
  b.writeUInt16LE(numColumns, 5);
  b.writeUInt16LE(numParams, 7);
  b.writeUInt16LE(warnings, 10);
  return { b, ok: { stmtId, numColumns, numParams } };
});

/** Every payload the gateway parses, valid, for mutation. */
const anyPayload = fc.oneof(
  handshakeV10.map(encodeHandshakeV10),
  handshakeResponse.map(encodeHandshakeResponse),
  changeUser.map(({ capabilities, change }) => encodeChangeUser(change, capabilities)),
  prepareOk.map((p) => p.b),
  fc
    .tuple(fc.constantFrom(...Object.values(COM)), bytes())
    .map(([c, rest]) => Buffer.concat([Buffer.from([c]), rest])),
  fc
    .tuple(latin1, bytes())
    .map(([plugin, data]) =>
      Buffer.concat([Buffer.from([0xfe]), Buffer.from(plugin, 'latin1'), Buffer.from([0]), data]),
    ),
  fc.tuple(u16, str).map(([code, msg]) => encodeErr(0, { code, state: 'HY000' }, msg).subarray(4)),
);

describe('MySQL payload parsers (fuzz)', () => {
  it('parseHandshakeV10 reads back the server greeting', () => {
    fuzz(
      fc.property(handshakeV10, (h) => {
        expect(parseHandshakeV10(encodeHandshakeV10(h))).toEqual(h);
      }),
      { runs: 1000 },
    );
  });

  it('parseHandshakeResponse reads back every client handshake response shape', () => {
    fuzz(
      fc.property(handshakeResponse, (h) => {
        const expected: HandshakeResponse = {
          capabilities: h.capabilities,
          maxPacket: h.maxPacket,
          charset: h.charset,
          user: h.user,
          authResponse: h.authResponse,
        };
        if (h.database !== undefined) expected.database = h.database;
        if (h.authPlugin !== undefined) expected.authPlugin = h.authPlugin;
        if (h.attrs !== undefined) expected.attrs = h.attrs;
        expect(parseHandshakeResponse(encodeHandshakeResponse(h))).toEqual(expected);
      }),
      { runs: 1000 },
    );
  });

  it('parseCommand reads back COM_CHANGE_USER and the text commands', () => {
    fuzz(
      fc.property(changeUser, str, u32, u16, ({ capabilities, change }, text, id, param) => {
        const expected: ChangeUser = {
          user: change.user,
          authResponse: change.authResponse,
          database: change.database,
        };
        if (change.charset !== undefined) expected.charset = change.charset;
        if (change.charset !== undefined && capabilities & CLIENT.PLUGIN_AUTH)
          expected.authPlugin = change.authPlugin ?? '';
        if (change.attrs !== undefined) expected.attrs = change.attrs;
        expect(parseCommand(encodeChangeUser(change, capabilities), capabilities)).toEqual({
          type: 'change_user',
          change: expected,
        });
        const t = Buffer.from(text);
        const cmd = (c: number, ...rest: Buffer[]) => Buffer.concat([Buffer.from([c]), ...rest]);
        const le32 = Buffer.alloc(4);
        le32.writeUInt32LE(id);
        const le16 = Buffer.alloc(2);
        le16.writeUInt16LE(param);
        expect(parseCommand(cmd(COM.QUERY, t), 0)).toEqual({ type: 'query', sql: text });
        expect(parseCommand(cmd(COM.INIT_DB, t), 0)).toEqual({ type: 'init_db', database: text });
        expect(parseCommand(cmd(COM.STMT_PREPARE, t), 0)).toEqual({ type: 'prepare', sql: text });
        expect(parseCommand(cmd(COM.STMT_CLOSE, le32), 0)).toEqual({ type: 'stmt_close', stmtId: id });
        expect(parseCommand(cmd(COM.STMT_RESET, le32), 0)).toEqual({ type: 'stmt_reset', stmtId: id });
        expect(parseCommand(cmd(COM.STMT_SEND_LONG_DATA, le32, le16, t), 0)).toEqual({
          type: 'send_long_data',
          stmtId: id,
          paramId: param,
        });
      }),
      { runs: 1000 },
    );
  });

  it('parseErr, parsePrepareOk, isOk and isSslRequest read back what the gateway and servers write', () => {
    fuzz(
      fc.property(
        u8,
        u16,
        fc.string({ maxLength: 8 }),
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        prepareOk,
        u32,
        u8,
        (seq, code, state, message, p, capabilities, charset) => {
          const err = new PacketDecoder({ maxPacketBytes: 1 << 16 }).push(
            encodeErr(seq, { code, state }, message),
          );
          expect(err).toHaveLength(1);
          expect(err[0]!.seq).toBe(seq);
          expect(isErr(err[0]!.payload)).toBe(true);
          expect(parseErr(err[0]!.payload)).toEqual({
            code,
            state: Buffer.from(state.padEnd(5, '0').slice(0, 5), 'latin1').toString('latin1'),
            message: Buffer.from(message.slice(0, 2000)).toString('utf8'),
          });
          expect(parsePrepareOk(p.b)).toEqual(p.ok);
          expect(isOk(encodeOk(seq).subarray(4))).toBe(true);
          expect(isSslRequest(encodeSslRequest(capabilities, charset))).toBe(true);
        },
      ),
      { runs: 1000 },
    );
  });

  it('every parser throws only MysqlWireError on damaged payloads', () => {
    fuzz(
      fc.property(hostileBytes(anyPayload), caps(0), (p, capabilities) => {
        onlyThrows(() => parseHandshakeV10(p), MysqlWireError);
        onlyThrows(() => parseHandshakeResponse(p), MysqlWireError);
        onlyThrows(() => parseCommand(p, capabilities), MysqlWireError);
        onlyThrows(() => parseCommand(p, GATEWAY_CAPABILITIES), MysqlWireError);
        onlyThrows(() => parseErr(p), MysqlWireError);
        onlyThrows(() => parsePrepareOk(p), MysqlWireError);
        onlyThrows(() => parseAuthSwitch(p), MysqlWireError);
        isOk(p);
        isErr(p);
        isSslRequest(p);
        const r = new Reader(p);
        onlyThrows(() => {
          while (r.remaining > 0) r.lenencBytes();
        }, MysqlWireError);
      }),
      { runs: 3000 },
    );
  });
});
