import { PgWireError } from './errors.js';

/** Request codes in the startup packet's version field. */
export const PROTOCOL_3_0 = 196608;
export const CANCEL_REQUEST_CODE = 80877102;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;

/** PostgreSQL's own cap on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_BYTES = 10_000;

/** The first packet a client sends (it has no type byte). */
export type StartupPacket =
  | {
      type: 'startup';
      major: number;
      minor: number;
      /** user, database, options, application_name, client_encoding, ... in the order sent. */
      params: Map<string, string>;
    }
  | { type: 'cancel'; pid: number; secret: number }
  | { type: 'ssl-request' }
  | { type: 'gssenc-request' };

/**
 * Reads the length-prefixed startup packet from the front of `buf`.
 * Returns undefined while more bytes are needed; throws PgWireError for a
 * length that lies (too small, over the cap, or not matching the contents).
 */
export function readStartupPacket(buf: Buffer): { packet: StartupPacket; length: number } | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readInt32BE(0);
  if (len < 8) throw new PgWireError(`startup packet length ${len} is too small`);
  if (len > MAX_STARTUP_BYTES) {
    throw new PgWireError(`startup packet of ${len} bytes is over the ${MAX_STARTUP_BYTES}-byte limit`, {
      reason: 'oversized',
    });
  }
  if (buf.length < len) return undefined;
  return { packet: decodeStartupPacket(buf.subarray(0, len)), length: len };
}

/** Decodes one whole startup packet (length field included). */
export function decodeStartupPacket(p: Buffer): StartupPacket {
  const len = p.readInt32BE(0);
  if (len !== p.length)
    throw new PgWireError(`startup packet length ${len} does not match its ${p.length} bytes`);
  const code = p.readInt32BE(4);
  if (code === CANCEL_REQUEST_CODE) {
    if (len !== 16) throw new PgWireError(`CancelRequest must be 16 bytes, got ${len}`);
    return { type: 'cancel', pid: p.readInt32BE(8), secret: p.readInt32BE(12) };
  }
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (len !== 8) throw new PgWireError(`encryption request must be 8 bytes, got ${len}`);
    return { type: code === SSL_REQUEST_CODE ? 'ssl-request' : 'gssenc-request' };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new PgWireError(`unsupported frontend protocol ${major}.${minor}: only 3.x is served`, {
      reason: 'unsupported',
      sqlstate: '0A000',
    });
  }
  const params = new Map<string, string>();
  let i = 8;
  for (;;) {
    if (i >= p.length) throw new PgWireError('startup packet is missing its terminating zero byte');
    if (p[i] === 0) {
      if (i !== p.length - 1)
        throw new PgWireError('startup packet has bytes after its terminating zero byte');
      break;
    }
    const k = cstring(p, i, 'startup parameter name');
    const v = cstring(p, k.next, `startup parameter "${k.value}"`);
    if (params.has(k.value)) throw new PgWireError(`startup parameter "${k.value}" is given twice`);
    params.set(k.value, v.value);
    i = v.next;
  }
  return { type: 'startup', major, minor, params };
}

function cstring(b: Buffer, start: number, what: string): { value: string; next: number } {
  const end = b.indexOf(0, start);
  if (end < 0) throw new PgWireError(`${what} is not zero-terminated`);
  return { value: b.toString('utf8', start, end), next: end + 1 };
}

/** Frontend message type bytes (after startup). */
export const F = {
  Query: 0x51, // Q
  Parse: 0x50, // P
  Bind: 0x42, // B
  Execute: 0x45, // E
  Describe: 0x44, // D
  Close: 0x43, // C
  Sync: 0x53, // S
  Flush: 0x48, // H
  Terminate: 0x58, // X
  CopyData: 0x64, // d
  CopyDone: 0x63, // c
  CopyFail: 0x66, // f
  FunctionCall: 0x46, // F
  Password: 0x70, // p (also SASL responses)
} as const;

const KNOWN = new Set<number>(Object.values(F));

export function isKnownFrontendType(t: number): boolean {
  return KNOWN.has(t);
}

/** Types whose bodies the gateway reads for the audit (and Close, to forget names). */
/** Messages that run something: what a session's `queries` count when its statements are not audited. */
export function isStatementRun(t: number): boolean {
  return t === F.Query || t === F.Execute || t === F.FunctionCall;
}

export function isAuditedFrontendType(t: number): boolean {
  return (
    t === F.Query || t === F.Parse || t === F.Bind || t === F.Execute || t === F.Close || t === F.FunctionCall
  );
}

export type FrontendMessage =
  | { type: 'query'; sql: string }
  | { type: 'parse'; statement: string; sql: string; paramTypes: number[] }
  | { type: 'bind'; portal: string; statement: string; params: BoundParam[] }
  | { type: 'execute'; portal: string; maxRows: number }
  | { type: 'close'; target: 'statement' | 'portal'; name: string }
  | { type: 'function-call'; oid: number; args: BoundParam[] };

/** A bound value: text or binary bytes, or SQL NULL. */
export type BoundParam = { format: 'text' | 'binary'; value: Buffer } | null;

/** Decodes an audited frontend message body; throws PgWireError when it is malformed. */
export function decodeFrontendMessage(type: number, body: Buffer): FrontendMessage {
  const r = new BodyReader(body, type);
  let m: FrontendMessage;
  switch (type) {
    case F.Query:
      m = { type: 'query', sql: r.cstring() };
      break;
    case F.Parse: {
      const statement = r.cstring();
      const sql = r.cstring();
      const n = r.count();
      const paramTypes: number[] = [];
      for (let i = 0; i < n; i++) paramTypes.push(r.uint32());
      m = { type: 'parse', statement, sql, paramTypes };
      break;
    }
    case F.Bind: {
      const portal = r.cstring();
      const statement = r.cstring();
      const formats = r.formats();
      const n = r.count();
      const params = r.values(n, formats);
      r.formats(); // result formats: read so a truncated message is caught
      m = { type: 'bind', portal, statement, params };
      break;
    }
    case F.Execute:
      m = { type: 'execute', portal: r.cstring(), maxRows: r.int32() };
      break;
    case F.Close: {
      const t = r.byte();
      if (t !== 0x53 && t !== 0x50)
        throw new PgWireError(`Close names target type 0x${t.toString(16)} (not S or P)`);
      m = { type: 'close', target: t === 0x53 ? 'statement' : 'portal', name: r.cstring() };
      break;
    }
    case F.FunctionCall: {
      const oid = r.uint32();
      const formats = r.formats();
      const n = r.count();
      const args = r.values(n, formats);
      r.int16(); // result format
      m = { type: 'function-call', oid, args };
      break;
    }
    default:
      throw new PgWireError(`message type 0x${type.toString(16)} is not decoded by the gateway`);
  }
  r.end();
  return m;
}

class BodyReader {
  #i = 0;
  readonly #b: Buffer;
  readonly #what: string;

  constructor(b: Buffer, type: number) {
    this.#b = b;
    this.#what = `message '${String.fromCharCode(type)}'`;
  }

  #need(n: number): void {
    if (this.#i + n > this.#b.length) throw new PgWireError(`${this.#what} is shorter than its contents say`);
  }

  byte(): number {
    this.#need(1);
    return this.#b[this.#i++]!;
  }

  /** Counts are unsigned 16-bit on the wire (PostgreSQL accepts up to 65535 parameters). */
  count(): number {
    this.#need(2);
    const v = this.#b.readUInt16BE(this.#i);
    this.#i += 2;
    return v;
  }

  int16(): number {
    this.#need(2);
    const v = this.#b.readInt16BE(this.#i);
    this.#i += 2;
    return v;
  }

  int32(): number {
    this.#need(4);
    const v = this.#b.readInt32BE(this.#i);
    this.#i += 4;
    return v;
  }

  uint32(): number {
    this.#need(4);
    const v = this.#b.readUInt32BE(this.#i);
    this.#i += 4;
    return v;
  }

  cstring(): string {
    const end = this.#b.indexOf(0, this.#i);
    if (end < 0) throw new PgWireError(`${this.#what} has a string that is not zero-terminated`);
    const s = this.#b.toString('utf8', this.#i, end);
    this.#i = end + 1;
    return s;
  }

  formats(): number[] {
    const n = this.count();
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const f = this.int16();
      if (f !== 0 && f !== 1)
        throw new PgWireError(`${this.#what} has format code ${f} (only 0 text and 1 binary exist)`);
      out.push(f);
    }
    return out;
  }

  values(n: number, formats: number[]): BoundParam[] {
    if (formats.length > 1 && formats.length !== n) {
      throw new PgWireError(`${this.#what} has ${formats.length} format codes for ${n} parameters`);
    }
    const out: BoundParam[] = [];
    for (let i = 0; i < n; i++) {
      const len = this.int32();
      if (len === -1) {
        out.push(null);
        continue;
      }
      if (len < -1) throw new PgWireError(`${this.#what} has parameter length ${len}`);
      this.#need(len);
      const f = formats.length === 0 ? 0 : formats.length === 1 ? formats[0]! : formats[i]!;
      out.push({ format: f === 1 ? 'binary' : 'text', value: this.#b.subarray(this.#i, this.#i + len) });
      this.#i += len;
    }
    return out;
  }

  end(): void {
    if (this.#i !== this.#b.length)
      throw new PgWireError(`${this.#what} has ${this.#b.length - this.#i} bytes after its contents`);
  }
}
