/**
 * Minimal DER encoder and reader for the few X.509 structures Gatehouse
 * builds on the hot path (leaf certificates) and reads back (the identity
 * extension). A generic ASN.1 schema library costs more per certificate than
 * the ECDSA signature itself (docs/decisions/0001-key-types.md).
 * No I/O; every read is bounds-checked and throws on malformed input.
 */

export class DerError extends Error {
  override name = 'DerError';
}

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const out: number[] = [];
  let v = n;
  while (v > 0) {
    out.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return Buffer.from([0x80 | out.length, ...out]);
}

/** Tag-length-value with the value made of `parts` concatenated. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  return Buffer.concat([Buffer.from([tag]), lengthBytes(n), ...parts]);
}

export const seq = (...parts: Uint8Array[]): Buffer => tlv(0x30, ...parts);
export const set = (...parts: Uint8Array[]): Buffer => tlv(0x31, ...parts);
export const octetString = (b: Uint8Array): Buffer => tlv(0x04, b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
export const bitString = (b: Uint8Array): Buffer => tlv(0x03, Buffer.from([0]), b);
export const BOOLEAN_TRUE: Buffer = Buffer.from([0x01, 0x01, 0xff]);
export const NULL: Buffer = Buffer.from([0x05, 0x00]);
/** Context-specific constructed [n]. */
export const explicit = (n: number, ...parts: Uint8Array[]): Buffer => tlv(0xa0 | n, ...parts);

/** INTEGER from an unsigned big-endian magnitude. */
export function uintBytes(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  const needsPad = m.length === 0 || (m[0] as number) & 0x80;
  return tlv(0x02, needsPad ? Buffer.concat([Buffer.from([0]), m]) : m);
}

export function uintSmall(n: number): Buffer {
  if (n === 0) return Buffer.from([0x02, 0x01, 0x00]);
  const b: number[] = [];
  let v = n;
  while (v > 0) {
    b.unshift(v & 0xff);
    v = Math.floor(v / 256);
  }
  return uintBytes(Buffer.from(b));
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => {
    if (!/^\d+$/.test(a)) throw new DerError(`bad OID arc in ${dotted}`);
    return BigInt(a);
  });
  if (arcs.length < 2) throw new DerError(`OID needs two arcs: ${dotted}`);
  const first = (arcs[0] as bigint) * 40n + (arcs[1] as bigint);
  const body: number[] = [];
  for (const arc of [first, ...arcs.slice(2)]) {
    const chunk: number[] = [Number(arc & 0x7fn)];
    let v = arc >> 7n;
    while (v > 0n) {
      chunk.unshift(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    body.push(...chunk);
  }
  return tlv(0x06, Buffer.from(body));
}

export function decodeOid(value: Uint8Array): string {
  const arcs: bigint[] = [];
  let v = 0n;
  for (let i = 0; i < value.length; i++) {
    const b = value[i] as number;
    v = (v << 7n) | BigInt(b & 0x7f);
    if ((b & 0x80) === 0) {
      arcs.push(v);
      v = 0n;
    } else if (i === value.length - 1) {
      throw new DerError('truncated OID');
    }
  }
  const first = arcs.shift();
  if (first === undefined) throw new DerError('empty OID');
  const a = first < 80n ? first / 40n : 2n;
  return [a, first - a * 40n, ...arcs].join('.');
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Z. */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(`${pad2(y % 100)}${rest}`, 'latin1'));
  return tlv(0x18, Buffer.from(`${String(y).padStart(4, '0')}${rest}`, 'latin1'));
}

export function decodeTime(tag: number, value: Uint8Array): Date {
  const s = Buffer.from(value).toString('latin1');
  const m =
    tag === 0x17
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
      : tag === 0x18
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
        : null;
  if (!m) throw new DerError(`bad time ${JSON.stringify(s)}`);
  let y = Number(m[1]);
  if (tag === 0x17) y += y < 50 ? 2000 : 1900;
  // Not Date.UTC: it reads years 0-99 as 1900-1999, and a GeneralizedTime year is literal.
  const d = new Date(0);
  d.setUTCFullYear(y, Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]));
  return d;
}

/** One decoded element: `bytes` is the whole TLV, `value` its contents (both views into the input). */
export interface Tlv {
  tag: number;
  bytes: Uint8Array;
  value: Uint8Array;
}

export function readTlv(buf: Uint8Array, offset = 0): Tlv {
  if (offset + 2 > buf.length) throw new DerError('truncated element');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported');
  let p = offset + 1;
  let len = buf[p++] as number;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding');
    if (p + n > buf.length) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[p++] as number);
    if (len < 0x80) throw new DerError('non-minimal length');
  }
  if (p + len > buf.length) throw new DerError('element overruns its container');
  return { tag, bytes: buf.subarray(offset, p + len), value: buf.subarray(p, p + len) };
}

/** The children of a constructed element's value, in order. */
export function children(value: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off < value.length) {
    const t = readTlv(value, off);
    out.push(t);
    off += t.bytes.length;
  }
  return out;
}

/** Reads exactly one element spanning the whole buffer. */
export function readOnly(buf: Uint8Array, expectedTag?: number): Tlv {
  const t = readTlv(buf, 0);
  if (t.bytes.length !== buf.length) throw new DerError('trailing bytes after element');
  if (expectedTag !== undefined && t.tag !== expectedTag) {
    throw new DerError(`expected tag 0x${expectedTag.toString(16)}, got 0x${t.tag.toString(16)}`);
  }
  return t;
}

export function pemToDer(pem: string, label?: string): Buffer {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/;
  const m = re.exec(pem);
  if (!m) throw new DerError('no PEM block found');
  if (label !== undefined && m[1] !== label) throw new DerError(`expected PEM ${label}, got ${m[1]}`);
  return Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64');
}

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
