/**
 * The few DER shapes CredSSP needs (MS-CSSP 2.2.1): SEQUENCE, EXPLICIT
 * context tags, INTEGER, OCTET STRING. Written by hand because TSRequest is
 * small and every field is an explicit tag; a reader that checks every
 * length against what is left is easier to fuzz than a schema. Pure.
 */

export class DerError extends Error {
  override name = 'DerError';
}

export const TAG = { INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, SEQUENCE: 0x30 } as const;
export const context = (n: number) => 0xa0 | n;

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, value: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

export const sequence = (...items: Uint8Array[]) => tlv(TAG.SEQUENCE, Buffer.concat(items));
export const explicit = (n: number, inner: Uint8Array) => tlv(context(n), inner);
export const octetString = (b: Uint8Array) => tlv(TAG.OCTET_STRING, b);

/** A non-negative INTEGER (two's complement, minimal). */
export function integer(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new DerError(`cannot encode integer ${n}`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return tlv(TAG.INTEGER, Buffer.from(bytes));
}

export interface Tlv {
  tag: number;
  value: Buffer;
  /** Bytes the whole element takes (header and value). */
  length: number;
}

/**
 * The element at the start of `buf`: `undefined` when more bytes are
 * needed, a DerError for bytes that cannot be DER (multi-byte tags,
 * indefinite or oversized lengths).
 */
export function peekTlv(
  buf: Uint8Array,
  max = 1 << 20,
): { tag: number; header: number; total: number } | undefined {
  if (buf.length < 2) return undefined;
  const tag = buf[0]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte DER tags are not used here');
  const first = buf[1]!;
  let len: number;
  let header: number;
  if (first < 0x80) {
    len = first;
    header = 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('DER length field too long');
    if (buf.length < 2 + n) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[2 + i]!;
    if (len < 0x80 || (n > 1 && buf[2] === 0)) throw new DerError('DER length not minimal');
    header = 2 + n;
  }
  if (len > max) throw new DerError(`DER element of ${len} bytes is over ${max}`);
  return { tag, header, total: header + len };
}

export function readTlv(buf: Buffer, what: string): Tlv {
  const p = peekTlv(buf);
  if (!p || p.total > buf.length) throw new DerError(`truncated ${what}`);
  return { tag: p.tag, value: buf.subarray(p.header, p.total), length: p.total };
}

export function expectTlv(buf: Buffer, tag: number, what: string): Tlv {
  const t = readTlv(buf, what);
  if (t.tag !== tag)
    throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got 0x${t.tag.toString(16)}`);
  return t;
}

/** The elements inside a constructed value, in order. */
export function children(value: Buffer, what: string): Tlv[] {
  const out: Tlv[] = [];
  let rest = value;
  while (rest.length > 0) {
    const t = readTlv(rest, what);
    out.push(t);
    rest = rest.subarray(t.length);
  }
  return out;
}

/** A non-negative INTEGER of at most 32 bits (versions, NTSTATUS codes as unsigned). */
export function readInteger(t: Tlv, what: string): number {
  if (t.tag !== TAG.INTEGER) throw new DerError(`${what} is not an INTEGER`);
  const v = t.value;
  if (v.length === 0 || v.length > 5) throw new DerError(`${what} has a bad length`);
  if (v.length > 1 && ((v[0] === 0 && !(v[1]! & 0x80)) || (v[0] === 0xff && v[1]! & 0x80)))
    throw new DerError(`${what} is not minimal`);
  // NTSTATUS codes arrive as negative 32-bit integers from some peers: read as unsigned 32-bit.
  let n = v[0]! & 0x80 ? -1 : 0;
  for (const b of v) n = n * 256 + b;
  if (n < 0) n += 0x100000000;
  if (n < 0 || n > 0xffffffff) throw new DerError(`${what} is out of range`);
  return n;
}

/** The one element inside an EXPLICIT tag. */
export function unwrapExplicit(t: Tlv, what: string): Tlv {
  const inner = children(t.value, what);
  if (inner.length !== 1) throw new DerError(`${what} must hold exactly one element`);
  return inner[0]!;
}
