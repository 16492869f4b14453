import {
  type AuditText,
  type AuditTextLimits,
  DEFAULT_AUDIT_TEXT_LIMITS,
  ParameterClipper,
  type RenderBytes,
  renderUtf8,
} from '@gatehouse/audit';
import type { PullDecoder } from '@gatehouse/core';
import { MysqlWireError, Reader } from './codec.js';
import { TYPE } from './constants.js';

export interface ExecuteParams {
  /** Each parameter as the audit keeps it ('NULL' for SQL NULL). */
  values: AuditText[];
  /** Types in force after this execute (new ones bound, or the previous ones). */
  types: number[];
}

/**
 * Decodes COM_STMT_EXECUTE parameters for the audit log. `prevTypes` are the
 * types bound by an earlier execute of the same statement (clients send them
 * once); `longData` holds what COM_STMT_SEND_LONG_DATA sent for parameters
 * whose value is not in this packet. String values are clipped as the audit
 * keeps them (`limits`).
 */
export function decodeExecuteParams(
  payload: Buffer,
  numParams: number,
  prevTypes: number[] | undefined,
  longData: ReadonlyMap<number, AuditText> = new Map(),
  limits: AuditTextLimits = DEFAULT_AUDIT_TEXT_LIMITS,
): ExecuteParams {
  const r = new Reader(payload, 1);
  r.u32('statement id');
  r.u8('flags');
  r.u32('iteration count');
  if (numParams === 0) return { values: [], types: [] };
  const nulls = r.bytes((numParams + 7) >> 3, 'NULL bitmap');
  const types = boundTypes(
    r.u8('new params bound flag'),
    () => r.bytes(2 * numParams, 'parameter types'),
    numParams,
    prevTypes,
  );
  const clipper = new ParameterClipper(limits);
  const values: AuditText[] = [];
  for (let i = 0; i < numParams; i++) {
    if (((nulls[i >> 3] as number) >> (i & 7)) & 1) values.push('NULL');
    else if (longData.has(i)) values.push(longData.get(i) as AuditText);
    else if (LENENC_TYPES.has((types[i] as number) & 0xff))
      values.push(clipper.clip(r.lenencBytes('parameter value'), renderMysql));
    else values.push(readValue(r, types[i] as number));
  }
  return { values, types };
}

/**
 * The same decoding for a COM_STMT_EXECUTE that streams (its statement id
 * already read): string values stream through the clipper, so a value of any
 * size costs what the audit keeps of it.
 */
export function* streamExecuteParams(
  numParams: number,
  prevTypes: number[] | undefined,
  longData: ReadonlyMap<number, AuditText>,
  limits: AuditTextLimits,
): PullDecoder<ExecuteParams> {
  yield { take: 5 }; // flags, iteration count
  if (numParams === 0) {
    yield { streamRest: () => undefined };
    return { values: [], types: [] };
  }
  const nulls = yield { take: (numParams + 7) >> 3 };
  const bound = (yield { take: 1 })[0] as number;
  const typeBytes = bound === 1 ? yield { take: 2 * numParams } : undefined;
  const types = boundTypes(bound, () => typeBytes as Buffer, numParams, prevTypes);
  const clipper = new ParameterClipper(limits);
  const values: AuditText[] = [];
  for (let i = 0; i < numParams; i++) {
    const t = types[i] as number;
    if (((nulls[i >> 3] as number) >> (i & 7)) & 1) values.push('NULL');
    else if (longData.has(i)) values.push(longData.get(i) as AuditText);
    else if (LENENC_TYPES.has(t & 0xff)) {
      const len = yield* lenenc();
      const d = clipper.digest();
      yield { stream: len, to: (b) => d.update(b) };
      values.push(clipper.take(d, renderMysql));
    } else {
      const width = FIXED_WIDTH[t & 0xff];
      let bytes: Buffer;
      if (width !== undefined) bytes = yield { take: width };
      else if (LENGTH_PREFIXED.has(t & 0xff)) {
        const len = yield { take: 1 };
        bytes = Buffer.concat([len, yield { take: len[0] as number }]);
      } else throw new MysqlWireError('malformed', `unknown parameter type 0x${(t & 0xff).toString(16)}`);
      values.push(readValue(new Reader(bytes), t));
    }
  }
  // Whatever follows the values is the server's to judge.
  yield { streamRest: () => undefined };
  return { values, types };
}

function boundTypes(
  bound: number,
  typeBytes: () => Buffer,
  numParams: number,
  prevTypes: number[] | undefined,
): number[] {
  if (bound === 1) {
    const b = typeBytes();
    const types: number[] = [];
    for (let i = 0; i < numParams; i++) {
      const t = b[2 * i] as number;
      const flags = b[2 * i + 1] as number;
      types.push(t | ((flags & 0x80) << 1));
    }
    return types;
  }
  if (prevTypes && prevTypes.length === numParams) return prevTypes;
  throw new MysqlWireError('malformed', 'COM_STMT_EXECUTE has no parameter types and none were bound before');
}

function* lenenc(): PullDecoder<number> {
  const first = (yield { take: 1 })[0] as number;
  if (first < 0xfb) return first;
  if (first === 0xfc) return (yield { take: 2 }).readUInt16LE(0);
  if (first === 0xfd) return (yield { take: 3 }).readUIntLE(0, 3);
  if (first === 0xfe) {
    const v = (yield { take: 8 }).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new MysqlWireError('malformed', 'parameter value is too large');
    return Number(v);
  }
  throw new MysqlWireError('malformed', `parameter value: 0x${first.toString(16)} is not a length`);
}

/** Types whose value is a length-encoded string of bytes (the ones a client can make large). */
const LENENC_TYPES: ReadonlySet<number> = new Set([
  TYPE.DECIMAL,
  TYPE.NEWDECIMAL,
  TYPE.VARCHAR,
  TYPE.VAR_STRING,
  TYPE.STRING,
  TYPE.ENUM,
  TYPE.SET,
  TYPE.JSON,
  TYPE.BIT,
  TYPE.TINY_BLOB,
  TYPE.MEDIUM_BLOB,
  TYPE.LONG_BLOB,
  TYPE.BLOB,
  TYPE.GEOMETRY,
]);

/** Bytes of the fixed-size types (as readValue reads them). */
const FIXED_WIDTH: Readonly<Record<number, number>> = {
  [TYPE.NULL]: 0,
  [TYPE.TINY]: 1,
  [TYPE.SHORT]: 2,
  [TYPE.YEAR]: 2,
  [TYPE.LONG]: 4,
  [TYPE.INT24]: 4,
  [TYPE.LONGLONG]: 8,
  [TYPE.FLOAT]: 4,
  [TYPE.DOUBLE]: 8,
};

/** Types sent as a length byte and that many bytes. */
const LENGTH_PREFIXED: ReadonlySet<number> = new Set([TYPE.DATE, TYPE.DATETIME, TYPE.TIMESTAMP, TYPE.TIME]);

function readValue(r: Reader, typeAndSign: number): string {
  const unsigned = (typeAndSign & 0x100) !== 0;
  const type = typeAndSign & 0xff;
  switch (type) {
    case TYPE.NULL:
      return 'NULL';
    case TYPE.TINY: {
      const v = r.u8('TINY');
      return String(unsigned ? v : (v << 24) >> 24);
    }
    case TYPE.SHORT:
    case TYPE.YEAR: {
      const v = r.u16('SHORT');
      return String(unsigned ? v : (v << 16) >> 16);
    }
    case TYPE.LONG:
    case TYPE.INT24: {
      const v = r.u32('LONG');
      return String(unsigned ? v : v | 0);
    }
    case TYPE.LONGLONG: {
      const v = r.u64('LONGLONG');
      return String(unsigned ? v : BigInt.asIntN(64, v));
    }
    case TYPE.FLOAT:
      return String(r.bytes(4, 'FLOAT').readFloatLE(0));
    case TYPE.DOUBLE:
      return String(r.bytes(8, 'DOUBLE').readDoubleLE(0));
    case TYPE.DATE:
    case TYPE.DATETIME:
    case TYPE.TIMESTAMP:
      return readDateTime(r);
    case TYPE.TIME:
      return readTime(r);
    default:
      throw new MysqlWireError('malformed', `unknown parameter type 0x${type.toString(16)}`);
  }
}

const p2 = (n: number) => String(n).padStart(2, '0');

function readDateTime(r: Reader): string {
  const len = r.u8('date length');
  if (![0, 4, 7, 11].includes(len)) throw new MysqlWireError('malformed', `date value of length ${len}`);
  if (len === 0) return '0000-00-00 00:00:00';
  const y = r.u16('year');
  const mo = r.u8('month');
  const d = r.u8('day');
  let out = `${String(y).padStart(4, '0')}-${p2(mo)}-${p2(d)}`;
  if (len >= 7) out += ` ${p2(r.u8('hour'))}:${p2(r.u8('minute'))}:${p2(r.u8('second'))}`;
  if (len === 11) out += `.${String(r.u32('microsecond')).padStart(6, '0')}`;
  return out;
}

function readTime(r: Reader): string {
  const len = r.u8('time length');
  if (![0, 8, 12].includes(len)) throw new MysqlWireError('malformed', `time value of length ${len}`);
  if (len === 0) return '00:00:00';
  const neg = r.u8('sign') === 1;
  const days = r.u32('days');
  const h = r.u8('hour') + days * 24;
  let out = `${neg ? '-' : ''}${p2(h)}:${p2(r.u8('minute'))}:${p2(r.u8('second'))}`;
  if (len === 12) out += `.${String(r.u32('microsecond')).padStart(6, '0')}`;
  return out;
}

/** Text as text; anything that is not clean UTF-8 as hex, so the audit log stays readable. */
export const renderMysql: RenderBytes = (b, clipped) => {
  const text = renderUtf8(b, clipped);
  const clean = !text.includes('\uFFFD') && !/[\x00-\x08\x0e-\x1f]/.test(text);
  return clean ? text : `0x${b.toString('hex')}`;
};
