import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import {
  encodeChangeUser,
  encodeErr,
  encodeGreetingErr,
  encodeHandshakeResponse,
  encodeHandshakeV10,
  encodeOk,
  encodePacket,
  encodeSslRequest,
  isSslRequest,
  MysqlWireError,
  PacketDecoder,
  parseAuthSwitch,
  parseCommand,
  parseErr,
  parseHandshakeResponse,
  parseHandshakeV10,
  parsePrepareOk,
} from './codec.js';
import { CLIENT, ER, GATEWAY_CAPABILITIES } from './constants.js';

// mysql2's own packet classes (CommonJS, no types): an independent implementation to check ours against.
const require = createRequire(import.meta.url);
// mysql2's "exports" hides lib/; load its files by path.
const mysql2Lib = path.join(path.dirname(require.resolve('mysql2')), 'lib');
// biome-ignore lint/suspicious/noExplicitAny: untyped CommonJS internals of mysql2
const Packets: any = require(path.join(mysql2Lib, 'packets/index.js'));
// biome-ignore lint/suspicious/noExplicitAny: untyped CommonJS internals of mysql2
const Packet: any = require(path.join(mysql2Lib, 'packets/packet.js'));

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('framing', () => {
  it('frames a payload with a 3-byte little-endian length and the sequence id', () => {
    expect(encodePacket(3, Buffer.from([0x0e])).toString('hex')).toBe('010000030e');
    expect(encodePacket(256 + 2, Buffer.from('ab')).toString('hex')).toBe('0200000261' + '62');
  });

  it('decodes packets split across chunks and several in one chunk', () => {
    const d = new PacketDecoder({ maxPacketBytes: 1024 });
    const bytes = Buffer.concat([
      encodePacket(0, Buffer.from('\x03select 1')),
      encodePacket(0, Buffer.from([0x01])),
    ]);
    expect(d.push(bytes.subarray(0, 3))).toEqual([]);
    expect(d.push(bytes.subarray(3, 7))).toEqual([]);
    const out = d.push(bytes.subarray(7));
    expect(out.map((p) => [p.seq, p.payload.toString('latin1')])).toEqual([
      [0, '\x03select 1'],
      [0, '\x01'],
    ]);
    expect(Buffer.concat(out.map((p) => p.raw))).toEqual(bytes);
    expect(d.buffered).toBe(0);
  });

  it('joins 16 MiB continuation frames and keeps the raw frames for forwarding', () => {
    const payload = Buffer.alloc(0xffffff + 10, 0x61);
    const framed = encodePacket(0, payload);
    expect(framed.readUIntLE(0, 3)).toBe(0xffffff);
    expect(framed[3]).toBe(0);
    expect(framed.readUIntLE(4 + 0xffffff, 3)).toBe(10);
    expect(framed[4 + 0xffffff + 3]).toBe(1);
    const d = new PacketDecoder({ maxPacketBytes: 32 * 1024 * 1024 });
    const out = [...d.push(framed.subarray(0, 5_000_000)), ...d.push(framed.subarray(5_000_000))];
    expect(out).toHaveLength(1);
    expect(out[0]?.payload.equals(payload)).toBe(true);
    expect(out[0]?.raw.equals(framed)).toBe(true);
  });

  it('a payload of exactly 16 MiB - 1 is followed by an empty frame', () => {
    const framed = encodePacket(5, Buffer.alloc(0xffffff));
    expect(framed.length).toBe(4 + 0xffffff + 4);
    expect(framed.subarray(-4).toString('hex')).toBe('00000006');
  });

  it('refuses a declared length over the limit as soon as the header arrives (lying length)', () => {
    const d = new PacketDecoder({ maxPacketBytes: 1000 });
    expect(() => d.push(hex('e90300 00'))).toThrow(MysqlWireError);
    try {
      new PacketDecoder({ maxPacketBytes: 1000 }).push(hex('ffffff 00'));
    } catch (e) {
      expect((e as MysqlWireError).reason).toBe('too_large');
    }
  });

  it('refuses continuation frames whose total exceeds the limit, and out-of-order continuations', () => {
    const d = new PacketDecoder({ maxPacketBytes: 0xffffff + 5 });
    const first = encodePacket(0, Buffer.alloc(0xffffff + 100)).subarray(0, 4 + 0xffffff + 4);
    expect(() => d.push(first)).toThrow(/exceeds the limit/);
    const e = new PacketDecoder({ maxPacketBytes: 64 * 1024 * 1024 });
    const bad = Buffer.concat([
      encodePacket(0, Buffer.alloc(0xffffff)).subarray(0, 4 + 0xffffff),
      hex('010000 07 00'),
    ]);
    expect(() => e.push(bad)).toThrow(/sequence 7, expected 1/);
  });

  it('read() leaves bytes after one packet untouched (a TLS ClientHello after SSLRequest)', () => {
    const d = new PacketDecoder({ maxPacketBytes: 16 * 1024 });
    const ssl = encodePacket(1, encodeSslRequest(CLIENT.PROTOCOL_41, 45));
    const hello = hex('16030100f4010000f00303');
    d.feed(Buffer.concat([ssl, hello]));
    const p = d.read();
    expect(p && isSslRequest(p.payload)).toBe(true);
    expect(d.takeRemainder()).toEqual(hello);
  });
});

describe('PacketDecoder work', () => {
  it('copies a large packet a bounded number of times however finely it arrives (re-copied its whole buffer on every chunk)', () => {
    // An 8 MiB packet in 1 KiB chunks took over 20 s of CPU: each chunk re-joined everything buffered.
    const stream = encodePacket(0, Buffer.alloc(4 << 20, 7));
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const d = new PacketDecoder({ maxPacketBytes: 8 << 20 });
      const packets = [];
      for (let i = 0; i < stream.length; i += 4096) packets.push(...d.push(stream.subarray(i, i + 4096)));
      expect(packets).toHaveLength(1);
      expect(packets[0]!.payload.length).toBe(4 << 20);
      const copied = concat.mock.results.reduce((n, r) => n + (r.value as Buffer).length, 0);
      expect(copied).toBeLessThanOrEqual(2 * stream.length);
    } finally {
      concat.mockRestore();
    }
  });
});

describe('ERR and OK', () => {
  it('encodes ERR with code, SQLSTATE marker and message', () => {
    const b = encodeErr(2, ER.ACCESS_DENIED, 'no');
    expect(b.toString('hex')).toBe(
      '0b000002' + 'ff' + '1504' + '23' + Buffer.from('28000no').toString('hex'),
    );
    expect(parseErr(b.subarray(4))).toEqual({ code: 1045, state: '28000', message: 'no' });
  });

  it('encodes an ERR in place of the greeting without a SQLSTATE marker (no CLIENT_PROTOCOL_41 agreed yet)', () => {
    const b = encodeGreetingErr(ER.UNKNOWN_ERROR.code, 'gatehouse proxy db: no');
    expect(b.toString('hex')).toBe(
      '19000000' + 'ff' + '5104' + Buffer.from('gatehouse proxy db: no').toString('hex'),
    );
    expect(parseErr(b.subarray(4))).toEqual({
      code: 1105,
      state: 'HY000',
      message: 'gatehouse proxy db: no',
    });
    // mysql2 reads it as a client reads a refusal before the handshake: the message as sent.
    const e = new Packet(0, b, 0, b.length).asError('utf8');
    expect(e.errno).toBe(1105);
    expect(e.message).toBe('gatehouse proxy db: no');
  });

  it('mysql2 reads our ERR and OK packets', () => {
    const err = encodeErr(1, ER.DBACCESS_DENIED, 'Gatehouse: access denied');
    const p = new Packet(1, err, 0, err.length);
    const e = p.asError('utf8');
    expect(e.errno).toBe(1044);
    expect(e.sqlState).toBe('42000');
    expect(e.message).toBe('Gatehouse: access denied');
    const ok = encodeOk(3);
    expect(ok.toString('hex')).toBe('07000003' + '00' + '00' + '00' + '0200' + '0000');
  });
});

describe('handshake', () => {
  const scramble = Buffer.from('abcdefghijklmnopqrst');

  it('our HandshakeV10 is what mysql2 parses', () => {
    const payload = encodeHandshakeV10({
      serverVersion: '5.5.5-10.11.19-MariaDB',
      connectionId: 7,
      authData: scramble,
      capabilities: GATEWAY_CAPABILITIES | CLIENT.SSL,
      charset: 45,
      status: 2,
      authPlugin: 'mysql_native_password',
    });
    const framed = encodePacket(0, payload);
    const h = Packets.Handshake.fromPacket(new Packet(0, framed, 0, framed.length));
    expect(h.serverVersion).toBe('5.5.5-10.11.19-MariaDB');
    expect(h.connectionId).toBe(7);
    expect(Buffer.concat([h.authPluginData1, h.authPluginData2]).subarray(0, 20).toString()).toBe(
      scramble.toString(),
    );
    expect(h.capabilityFlags >>> 0).toBe((GATEWAY_CAPABILITIES | CLIENT.SSL) >>> 0);
    expect(h.authPluginName).toBe('mysql_native_password');
    // And our parser reads it back.
    const back = parseHandshakeV10(payload);
    expect(back).toMatchObject({ serverVersion: '5.5.5-10.11.19-MariaDB', connectionId: 7, charset: 45 });
    expect(back.authData.toString()).toBe(scramble.toString());
  });

  it('parses a real MariaDB 10.11 greeting (bytes captured from mariadbd)', () => {
    const bytes = hex(
      '0a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100040000003123587667247a5a00feff080200ff81150000000000001d00000037407a6879493e3d536d4a6a006d7973716c5f6e61746976655f70617373776f726400',
    );
    const g = parseHandshakeV10(bytes);
    expect(g.serverVersion).toBe('5.5.5-10.11.19-MariaDB-0+deb12u1');
    expect(g.capabilities & CLIENT.SSL).toBeTruthy();
    expect(g.authPlugin).toBe('mysql_native_password');
    expect(g.authData).toHaveLength(20);
    expect(g.connectionId).toBe(4);
    // MariaDB clears CLIENT_LONG_PASSWORD (its "CLIENT_MYSQL" bit) and keeps extended caps in the reserved bytes.
    expect(g.capabilities & CLIENT.LONG_PASSWORD).toBe(0);
  });

  it('reads a HandshakeResponse41 written by mysql2 (user, database, attributes)', () => {
    const flags =
      CLIENT.PROTOCOL_41 |
      CLIENT.SECURE_CONNECTION |
      CLIENT.PLUGIN_AUTH |
      CLIENT.CONNECT_WITH_DB |
      CLIENT.CONNECT_ATTRS |
      CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA;
    const r = new Packets.HandshakeResponse({
      flags,
      user: 'alice',
      database: 'shop',
      password: 'ignored',
      charsetNumber: 45,
      authPluginData1: scramble.subarray(0, 8),
      authPluginData2: scramble.subarray(8),
      connectAttributes: { _client_name: 'test' },
    }).toPacket();
    const resp = parseHandshakeResponse(r.buffer.subarray(4));
    expect(resp).toMatchObject({
      user: 'alice',
      database: 'shop',
      authPlugin: 'mysql_native_password',
      charset: 45,
    });
    expect(resp.authResponse).toHaveLength(20);
    expect(resp.attrs?.includes(Buffer.from('_client_name'))).toBe(true);
    // Re-encoding keeps every field.
    expect(parseHandshakeResponse(encodeHandshakeResponse(resp))).toEqual(resp);
  });

  it('tells an SSLRequest from a full response', () => {
    expect(isSslRequest(encodeSslRequest(CLIENT.PROTOCOL_41, 45))).toBe(true);
    const full = encodeHandshakeResponse({
      capabilities: CLIENT.PROTOCOL_41 | CLIENT.SSL,
      maxPacket: 1,
      charset: 45,
      user: 'a',
      authResponse: Buffer.alloc(0),
    });
    expect(isSslRequest(full)).toBe(false);
    expect(isSslRequest(Buffer.alloc(32))).toBe(false);
  });

  it('refuses a pre-4.1 or truncated handshake response', () => {
    expect(() => parseHandshakeResponse(Buffer.alloc(32))).toThrow(/protocol 4.1/);
    const cut = encodeHandshakeResponse({
      capabilities: CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION,
      maxPacket: 1,
      charset: 45,
      user: 'alice',
      authResponse: Buffer.alloc(20, 1),
    });
    expect(() => parseHandshakeResponse(cut.subarray(0, cut.length - 5))).toThrow(MysqlWireError);
    expect(() => parseHandshakeResponse(cut.subarray(0, 36))).toThrow(/not NUL-terminated/);
  });

  it('parses AuthSwitchRequest', () => {
    expect(parseAuthSwitch(Buffer.from('\xfeclient_ed25519\0abc', 'latin1'))).toEqual({
      plugin: 'client_ed25519',
      data: Buffer.from('abc'),
    });
  });
});

describe('commands', () => {
  const caps = GATEWAY_CAPABILITIES;

  it('parses the commands the relay audits or checks', () => {
    expect(parseCommand(Buffer.from('\x03SELECT 1'), caps)).toEqual({ type: 'query', sql: 'SELECT 1' });
    expect(parseCommand(Buffer.from('\x02shop'), caps)).toEqual({ type: 'init_db', database: 'shop' });
    expect(parseCommand(Buffer.from('\x16SELECT ?'), caps)).toEqual({ type: 'prepare', sql: 'SELECT ?' });
    expect(parseCommand(hex('01'), caps)).toEqual({ type: 'quit' });
    expect(parseCommand(hex('19 07000000'), caps)).toEqual({ type: 'stmt_close', stmtId: 7 });
    expect(parseCommand(hex('18 07000000 0200 6162'), caps)).toEqual({
      type: 'send_long_data',
      stmtId: 7,
      paramId: 2,
    });
    expect(parseCommand(hex('0e'), caps)).toEqual({ type: 'other', command: 0x0e });
    expect(() => parseCommand(hex('17 0700'), caps)).toThrow(MysqlWireError);
    expect(() => parseCommand(Buffer.alloc(0), caps)).toThrow(MysqlWireError);
  });

  it('reads a COM_CHANGE_USER written by mysql2 and re-encodes it without the password proof', () => {
    const p = new Packets.ChangeUser({
      flags: caps,
      user: 'alice',
      database: 'other',
      password: 'x',
      charsetNumber: 45,
      authPluginData1: Buffer.alloc(8, 1),
      authPluginData2: Buffer.alloc(12, 2),
      connectAttributes: { a: 'b' },
    }).toPacket();
    const cmd = parseCommand(p.buffer.subarray(4), caps);
    expect(cmd.type).toBe('change_user');
    if (cmd.type !== 'change_user') return;
    expect(cmd.change).toMatchObject({ user: 'alice', database: 'other', charset: 45 });
    const again = parseCommand(
      encodeChangeUser({ ...cmd.change, authResponse: Buffer.alloc(0) }, caps),
      caps,
    );
    expect(again).toEqual({ type: 'change_user', change: { ...cmd.change, authResponse: Buffer.alloc(0) } });
  });

  it('parses COM_STMT_PREPARE_OK', () => {
    expect(parsePrepareOk(hex('00 05000000 0200 0300 00 0000'))).toEqual({
      stmtId: 5,
      numColumns: 2,
      numParams: 3,
    });
    expect(() => parsePrepareOk(hex('ff 1504'))).toThrow(MysqlWireError);
  });
});
