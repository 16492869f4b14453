import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MysqlWireError } from './codec.js';
import { TYPE } from './constants.js';
import { decodeExecuteParams } from './params.js';

const require = createRequire(import.meta.url);
// mysql2's "exports" hides lib/; load its files by path.
const mysql2Lib = path.join(path.dirname(require.resolve('mysql2')), 'lib');
// biome-ignore lint/suspicious/noExplicitAny: untyped CommonJS internals of mysql2
const Packets: any = require(path.join(mysql2Lib, 'packets/index.js'));

/** COM_STMT_EXECUTE as mysql2 writes it. */
function mysql2Execute(params: unknown[]): Buffer {
  return new Packets.Execute(1, params, 45, 'Z').toPacket().buffer.subarray(4);
}

describe('COM_STMT_EXECUTE parameters', () => {
  it('decodes what mysql2 sends (ints, strings, doubles, NULL, dates, buffers, bigint)', () => {
    const payload = mysql2Execute([
      42,
      -7,
      'héllo',
      1.5,
      null,
      new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 123)),
      Buffer.from([0, 1, 2, 255]),
      9007199254740993n,
      true,
    ]);
    const d = decodeExecuteParams(payload, 9, undefined);
    expect(d.values).toEqual([
      '42',
      '-7',
      'héllo',
      '1.5',
      'NULL',
      '2024-05-06 07:08:09.123000',
      '0x000102ff',
      '9007199254740993',
      '1',
    ]);
  });

  it('uses the types bound by an earlier execute when new_params_bound is 0', () => {
    const first = decodeExecuteParams(
      Buffer.from('17010000000001000000' + '00' + '01' + '0300' + '05000000', 'hex'),
      1,
      undefined,
    );
    expect(first).toEqual({ values: ['5'], types: [TYPE.LONG] });
    const again = decodeExecuteParams(
      Buffer.from('17010000000001000000' + '00' + '00' + '06000000', 'hex'),
      1,
      first.types,
    );
    expect(again.values).toEqual(['6']);
    expect(() =>
      decodeExecuteParams(
        Buffer.from('17010000000001000000' + '00' + '00' + '06000000', 'hex'),
        1,
        undefined,
      ),
    ).toThrow(/no parameter types/);
  });

  it('decodes unsigned, TIME and long-data parameters', () => {
    // 3 params: unsigned TINY 255, TIME -1d 02:03:04, long data (no bytes in this packet).
    const payload = Buffer.from(
      '17010000000001000000' +
        '00' +
        '01' +
        '0180' +
        '0b00' +
        'fc00' +
        'ff' +
        '08' +
        '01' +
        '01000000' +
        '020304',
      'hex',
    );
    expect(decodeExecuteParams(payload, 3, undefined, new Map([[2, 'sent as long data']])).values).toEqual([
      '255',
      '-26:03:04',
      'sent as long data',
    ]);
  });

  it('refuses truncated values and unknown types with the codec error', () => {
    const cut = Buffer.from('17010000000001000000' + '00' + '01' + '0800' + '0500', 'hex');
    expect(() => decodeExecuteParams(cut, 1, undefined)).toThrow(MysqlWireError);
    const unknown = Buffer.from('17010000000001000000' + '00' + '01' + '2000' + '00', 'hex');
    expect(() => decodeExecuteParams(unknown, 1, undefined)).toThrow(/unknown parameter type 0x20/);
  });
});
