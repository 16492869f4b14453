import { MysqlWireError, Reader } from './codec.js';
import { TYPE } from './constants.js';

export interface ExecuteParams {
  /** Each parameter rendered for the audit log ('NULL' for SQL NULL). */
  values: string[];
  /** Types in force after this execute (new ones bound, or the previous ones). */
  types: number[];
}

const MAX_RENDERED = 4096;

/**
 * Decodes COM_STMT_EXECUTE parameters for the audit log. `prevTypes` are the
 * types bound by an earlier execute of the same statement (clients send them
 * once); `longData` marks parameters sent with COM_STMT_SEND_LONG_DATA, whose
 * value is not in this packet.
 */
export function decodeExecuteParams(
  payload: Buffer,
  numParams: number,
  prevTypes: number[] | undefined,
  longData: ReadonlySet<number> = new Set(),
): ExecuteParams {
  const r = new Reader(payload, 1);
  r.u32('statement id');
  r.u8('flags');
  r.u32('iteration count');
  if (numParams === 0) return { values: [], types: [] };
  const nulls = r.bytes((numParams + 7) >> 3, 'NULL bitmap');
  const bound = r.u8('new params bound flag');
  let types: number[];
  if (bound === 1) {
    types = [];
    for (let i = 0; i < numParams; i++) {
      const t = r.u8('parameter type');
      const flags = r.u8('parameter flags');
      types.push(t | ((flags & 0x80) << 1));
    }
  } else if (prevTypes && prevTypes.length === numParams) {
    types = prevTypes;
  } else {
    throw new MysqlWireError(
      'malformed',
      'COM_STMT_EXECUTE has no parameter types and none were bound before',
    );
  }
  const values: string[] = [];
  for (let i = 0; i < numParams; i++) {
    if (((nulls[i >> 3] as number) >> (i & 7)) & 1) {
      values.push('NULL');
      continue;
    }
    if (longData.has(i)) {
      values.push('<long data>');
      continue;
    }
    values.push(readValue(r, types[i] as number));
  }
  return { values, types };
}

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
    case TYPE.DECIMAL:
    case TYPE.NEWDECIMAL:
    case TYPE.VARCHAR:
    case TYPE.VAR_STRING:
    case TYPE.STRING:
    case TYPE.ENUM:
    case TYPE.SET:
    case TYPE.JSON:
    case TYPE.BIT:
    case TYPE.TINY_BLOB:
    case TYPE.MEDIUM_BLOB:
    case TYPE.LONG_BLOB:
    case TYPE.BLOB:
    case TYPE.GEOMETRY:
      return renderBytes(r.lenencBytes('parameter value'));
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
function renderBytes(b: Buffer): string {
  const text = b.toString('utf8');
  const clean =
    Buffer.byteLength(text) === b.length && !text.includes('\uFFFD') && !/[\x00-\x08\x0e-\x1f]/.test(text);
  const s = clean ? text : `0x${b.toString('hex')}`;
  return s.length > MAX_RENDERED ? `${s.slice(0, MAX_RENDERED)}…(${b.length} bytes)` : s;
}
