import { serialize } from 'pg-protocol';
import { describe, expect, it } from 'vitest';
import { PgWireError } from './errors.js';
import {
  CANCEL_REQUEST_CODE,
  decodeFrontendMessage,
  F,
  MAX_STARTUP_BYTES,
  readStartupPacket,
} from './frontend.js';

const startup = (params: Record<string, string>) => serialize.startup(params);
const body = (raw: Buffer) => raw.subarray(5);

describe('readStartupPacket', () => {
  it('reads user, database, options and application_name from pg-protocol bytes', () => {
    const raw = startup({
      user: 'alice',
      database: 'app',
      options: '-c search_path=x',
      application_name: 'psql',
    });
    const r = readStartupPacket(raw);
    expect(r?.length).toBe(raw.length);
    expect(r?.packet).toEqual({
      type: 'startup',
      major: 3,
      minor: 0,
      params: new Map([
        ['user', 'alice'],
        ['database', 'app'],
        ['options', '-c search_path=x'],
        ['application_name', 'psql'],
        ['client_encoding', 'UTF8'],
      ]),
    });
  });

  it('waits for more bytes, byte by byte', () => {
    const raw = startup({ user: 'alice' });
    for (let i = 0; i < raw.length; i++) expect(readStartupPacket(raw.subarray(0, i))).toBeUndefined();
    expect(readStartupPacket(raw)?.packet.type).toBe('startup');
  });

  it('reads a CancelRequest, SSLRequest and GSSENCRequest', () => {
    expect(readStartupPacket(serialize.cancel(1234, -5))?.packet).toEqual({
      type: 'cancel',
      pid: 1234,
      secret: -5,
    });
    expect(readStartupPacket(serialize.requestSsl())?.packet).toEqual({ type: 'ssl-request' });
    expect(readStartupPacket(Buffer.from('0000000804d21630', 'hex'))?.packet).toEqual({
      type: 'gssenc-request',
    });
  });

  it('refuses lying and oversized lengths', () => {
    expect(() => readStartupPacket(Buffer.from('00000005', 'hex'))).toThrow(/too small/);
    const huge = Buffer.alloc(8);
    huge.writeInt32BE(MAX_STARTUP_BYTES + 1, 0);
    expect(() => readStartupPacket(huge)).toThrow(PgWireError);
    expect(() => readStartupPacket(huge)).toThrow(/over the 10000-byte limit/);
    // The length claims 16 bytes of a cancel but the code says startup with no terminator.
    const cancelLen = Buffer.alloc(12);
    cancelLen.writeInt32BE(12, 0);
    cancelLen.writeInt32BE(CANCEL_REQUEST_CODE, 4);
    expect(() => readStartupPacket(cancelLen)).toThrow(/CancelRequest must be 16 bytes/);
  });

  it('refuses parameters that overrun or trail the length', () => {
    const raw = startup({ user: 'alice' });
    const cut = Buffer.from(raw.subarray(0, raw.length - 1));
    cut.writeInt32BE(cut.length, 0);
    expect(() => readStartupPacket(cut)).toThrow(PgWireError);
    const trailing = Buffer.concat([raw, Buffer.from('x\0')]);
    trailing.writeInt32BE(trailing.length, 0);
    expect(() => readStartupPacket(trailing)).toThrow(/after its terminating zero/);
  });

  it('refuses protocol 2 with feature_not_supported', () => {
    const p = Buffer.from('0000000900020000 00'.replace(/ /g, ''), 'hex');
    try {
      readStartupPacket(p);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PgWireError);
      expect((err as PgWireError).sqlstate).toBe('0A000');
    }
  });
});

describe('decodeFrontendMessage', () => {
  it('decodes Query, Parse, Bind, Execute and Close as pg-protocol encodes them', () => {
    expect(decodeFrontendMessage(F.Query, body(serialize.query('select 1')))).toEqual({
      type: 'query',
      sql: 'select 1',
    });
    expect(
      decodeFrontendMessage(F.Parse, body(serialize.parse({ name: 's1', text: 'select $1', types: [23] }))),
    ).toEqual({ type: 'parse', statement: 's1', sql: 'select $1', paramTypes: [23] });
    const bind = decodeFrontendMessage(
      F.Bind,
      body(serialize.bind({ portal: 'p', statement: 's1', values: ['42', null, Buffer.from([1, 2])] })),
    );
    expect(bind).toEqual({
      type: 'bind',
      portal: 'p',
      statement: 's1',
      params: [
        { format: 'text', value: Buffer.from('42') },
        null,
        { format: 'binary', value: Buffer.from([1, 2]) },
      ],
    });
    expect(decodeFrontendMessage(F.Execute, body(serialize.execute({ portal: 'p', rows: 10 })))).toEqual({
      type: 'execute',
      portal: 'p',
      maxRows: 10,
    });
    expect(decodeFrontendMessage(F.Close, body(serialize.close({ type: 'S', name: 's1' })))).toEqual({
      type: 'close',
      target: 'statement',
      name: 's1',
    });
  });

  it('refuses truncated and padded bodies', () => {
    const b = body(serialize.bind({ statement: 's', values: ['abc'] }));
    expect(() => decodeFrontendMessage(F.Bind, b.subarray(0, b.length - 3))).toThrow(
      /shorter than its contents/,
    );
    expect(() => decodeFrontendMessage(F.Query, Buffer.from('select 1'))).toThrow(/not zero-terminated/);
    expect(() =>
      decodeFrontendMessage(F.Execute, Buffer.concat([body(serialize.execute()), Buffer.from([0])])),
    ).toThrow(/after its contents/);
  });
});
