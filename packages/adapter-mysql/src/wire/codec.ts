import { ByteQueue } from '@gatehouse/core/lite';
import { CLIENT, COM, type ErrSpec, MAX_FRAME_PAYLOAD } from './constants.js';

/** The one error type the codec throws: malformed, truncated, oversized or out-of-order input. */
export class MysqlWireError extends Error {
  readonly reason: 'too_large' | 'sequence' | 'malformed';
  constructor(reason: MysqlWireError['reason'], message: string) {
    super(message);
    this.name = 'MysqlWireError';
    this.reason = reason;
  }
}

const EMPTY = Buffer.alloc(0);

export interface Packet {
  /** Sequence id of the first frame. */
  seq: number;
  /** The logical payload (continuation frames joined). */
  payload: Buffer;
  /** The frames exactly as received (header included), to forward without re-encoding. */
  raw: Buffer;
}

/**
 * Splits a byte stream into MySQL packets: 3-byte little-endian length,
 * 1-byte sequence id; a frame of 0xffffff bytes continues in the next one.
 * A declared size over the limit is refused as soon as the header arrives,
 * so a lying length never makes us buffer.
 */
export class PacketDecoder {
  maxPacketBytes: number;
  readonly #buf = new ByteQueue();
  /** Frames of a packet still being continued. */
  #parts: Buffer[] = [];
  #raws: Buffer[] = [];
  #partBytes = 0;
  #firstSeq = 0;
  #nextSeq = 0;

  constructor(opts: { maxPacketBytes: number }) {
    this.maxPacketBytes = opts.maxPacketBytes;
  }

  /** Bytes received but not yet part of a whole packet. */
  get buffered(): number {
    return this.#buf.length + this.#partBytes;
  }

  /** Adds bytes and returns every whole packet; throws MysqlWireError for a bad header. */
  push(chunk: Buffer): Packet[] {
    this.feed(chunk);
    const out: Packet[] = [];
    for (let p = this.read(); p; p = this.read()) out.push(p);
    return out;
  }

  /** Adds bytes without parsing them (see read()). */
  feed(chunk: Buffer): void {
    this.#buf.push(chunk);
  }

  /**
   * The next whole packet, or undefined until more bytes arrive. Parsing one
   * packet at a time leaves what follows untouched, e.g. a TLS ClientHello
   * in the same chunk as the SSLRequest.
   */
  read(): Packet | undefined {
    for (;;) {
      const head = this.#buf.peek(4);
      if (!head) return undefined;
      const len = head.readUIntLE(0, 3);
      const seq = head[3] as number;
      if (this.#parts.length > 0 && seq !== this.#nextSeq) {
        throw new MysqlWireError(
          'sequence',
          `continuation frame has sequence ${seq}, expected ${this.#nextSeq}`,
        );
      }
      if (this.#partBytes + len > this.maxPacketBytes) {
        throw new MysqlWireError(
          'too_large',
          `packet of ${this.#partBytes + len} bytes exceeds the limit of ${this.maxPacketBytes}`,
        );
      }
      // Not joined until the whole frame is here: chunks of a large packet are copied once.
      if (this.#buf.length - 4 < len) return undefined;
      const frame = this.#buf.take(4 + len);
      if (len === MAX_FRAME_PAYLOAD) {
        if (this.#parts.length === 0) this.#firstSeq = seq;
        // Copies: the chunk behind a view would otherwise stay alive for the whole packet.
        this.#parts.push(Buffer.from(frame.subarray(4)));
        this.#raws.push(Buffer.from(frame.subarray(0, 4)));
        this.#partBytes += len;
        this.#nextSeq = (seq + 1) & 0xff;
        continue;
      }
      if (this.#parts.length === 0) return { seq, payload: frame.subarray(4), raw: frame };
      this.#parts.push(frame.subarray(4));
      const payload = Buffer.concat(this.#parts);
      const headers = [...this.#raws, frame.subarray(0, 4)];
      const rawParts = this.#parts.flatMap((part, i) => [headers[i] as Buffer, part]);
      const out = { seq: this.#firstSeq, payload, raw: Buffer.concat(rawParts) };
      this.#parts = [];
      this.#raws = [];
      this.#partBytes = 0;
      return out;
    }
  }

  /** Bytes after the last whole packet (e.g. a TLS ClientHello that followed SSLRequest). */
  takeRemainder(): Buffer {
    return this.#buf.take(this.#buf.length);
  }
}

/**
 * What `CommandReader.push` hands out, in wire order:
 * - `packet`: a whole single-frame packet of at most `maxBufferedBytes` payload bytes;
 * - `part`: a piece of a larger packet (or one split in 16 MiB frames) as it arrives: `raw` to
 *   forward (frame headers included), `payload` its payload bytes, `seq` the sequence id of the
 *   frame it belongs to, `first` on the first piece, `end` on the piece that completes the packet.
 * Concatenating every segment's raw bytes gives back exactly the input.
 */
export type CommandSegment =
  | { kind: 'packet'; packet: Packet }
  | { kind: 'part'; raw: Buffer; payload: Buffer; seq: number; first: boolean; end: boolean };

/**
 * Splits the client's command stream after authentication. Small packets
 * come out whole (the common case, without copying when a packet sits in
 * one chunk); a packet over `maxBufferedBytes`, and any packet continued over
 * several frames, comes out in pieces so the relay never holds it whole.
 * A total over `maxPacketBytes` is refused as soon as a header says so.
 */
export class CommandReader {
  readonly #max: number;
  readonly #maxBuffered: number;
  /** Header bytes of the next frame seen so far (fewer than 4). */
  #head: Buffer = EMPTY;
  /** A small packet whose payload straddles chunks. */
  #whole: { seq: number; raw: Buffer; filled: number } | undefined;
  /** The streamed packet: its frame's bytes still to come, the frame's length and sequence id. */
  #stream: { frameLeft: number; frameLen: number; seq: number; total: number } | undefined;

  constructor(opts: { maxPacketBytes: number; maxBufferedBytes: number }) {
    this.#max = opts.maxPacketBytes;
    this.#maxBuffered = opts.maxBufferedBytes;
  }

  push(chunk: Buffer): CommandSegment[] {
    const out: CommandSegment[] = [];
    let i = 0;
    while (i < chunk.length) {
      const st = this.#stream;
      if (st && st.frameLeft > 0) {
        const n = Math.min(st.frameLeft, chunk.length - i);
        const piece = chunk.subarray(i, i + n);
        st.frameLeft -= n;
        i += n;
        const end = st.frameLeft === 0 && st.frameLen < MAX_FRAME_PAYLOAD;
        if (end) this.#stream = undefined;
        out.push({ kind: 'part', raw: piece, payload: piece, seq: st.seq, first: false, end });
        continue;
      }
      const w = this.#whole;
      if (w) {
        const n = Math.min(w.raw.length - w.filled, chunk.length - i);
        chunk.copy(w.raw, w.filled, i, i + n);
        w.filled += n;
        i += n;
        if (w.filled === w.raw.length) {
          this.#whole = undefined;
          out.push({ kind: 'packet', packet: { seq: w.seq, payload: w.raw.subarray(4), raw: w.raw } });
        }
        continue;
      }
      // A frame header, which may straddle chunks.
      const start = i;
      const take = Math.min(4 - this.#head.length, chunk.length - i);
      const header =
        this.#head.length === 0 && take === 4
          ? chunk.subarray(i, i + 4)
          : Buffer.concat([this.#head, chunk.subarray(i, i + take)]);
      i += take;
      if (header.length < 4) {
        this.#head = Buffer.from(header);
        continue;
      }
      this.#head = EMPTY;
      const len = header.readUIntLE(0, 3);
      const seq = header[3] as number;
      if (st) {
        // The next frame of a continued packet.
        const expected = (st.seq + 1) & 0xff;
        if (seq !== expected) {
          throw new MysqlWireError(
            'sequence',
            `continuation frame has sequence ${seq}, expected ${expected}`,
          );
        }
        st.total += len;
        this.#checkTotal(st.total);
        st.seq = seq;
        st.frameLen = len;
        st.frameLeft = len;
        // A continued packet whose size is a multiple of 16 MiB - 1 ends with an empty frame.
        const end = len === 0;
        if (end) this.#stream = undefined;
        out.push({ kind: 'part', raw: header, payload: EMPTY, seq, first: false, end });
        continue;
      }
      this.#checkTotal(len);
      if (len <= this.#maxBuffered && len < MAX_FRAME_PAYLOAD) {
        if (chunk.length - i >= len && i - start === 4) {
          // The whole packet is in this chunk: a view, no copy.
          const raw = chunk.subarray(start, i + len);
          i += len;
          out.push({ kind: 'packet', packet: { seq, payload: raw.subarray(4), raw } });
          continue;
        }
        const raw = Buffer.allocUnsafe(4 + len);
        header.copy(raw, 0, 0, 4);
        if (len === 0) out.push({ kind: 'packet', packet: { seq, payload: raw.subarray(4), raw } });
        else this.#whole = { seq, raw, filled: 4 };
        continue;
      }
      this.#stream = { frameLeft: len, frameLen: len, seq, total: len };
      out.push({ kind: 'part', raw: header, payload: EMPTY, seq, first: true, end: false });
    }
    return out;
  }

  #checkTotal(total: number): void {
    if (total > this.#max) {
      throw new MysqlWireError('too_large', `packet of ${total} bytes exceeds the limit of ${this.#max}`);
    }
  }
}

/** Frames a payload, splitting at 16 MiB - 1 as the protocol requires. */
export function encodePacket(seq: number, payload: Buffer): Buffer {
  const frames: Buffer[] = [];
  let off = 0;
  let s = seq & 0xff;
  for (;;) {
    const len = Math.min(MAX_FRAME_PAYLOAD, payload.length - off);
    const h = Buffer.alloc(4);
    h.writeUIntLE(len, 0, 3);
    h[3] = s;
    frames.push(h, payload.subarray(off, off + len));
    off += len;
    s = (s + 1) & 0xff;
    if (len < MAX_FRAME_PAYLOAD) break;
  }
  return Buffer.concat(frames);
}

/** Bounds-checked cursor over one payload. */
export class Reader {
  readonly buf: Buffer;
  off: number;
  constructor(buf: Buffer, off = 0) {
    this.buf = buf;
    this.off = off;
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  #need(n: number, what: string): void {
    if (n < 0 || this.off + n > this.buf.length) {
      throw new MysqlWireError(
        'malformed',
        `truncated packet: ${what} needs ${n} bytes, ${this.remaining} left`,
      );
    }
  }
  u8(what = 'u8'): number {
    this.#need(1, what);
    return this.buf[this.off++] as number;
  }
  u16(what = 'u16'): number {
    this.#need(2, what);
    const v = this.buf.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }
  u24(what = 'u24'): number {
    this.#need(3, what);
    const v = this.buf.readUIntLE(this.off, 3);
    this.off += 3;
    return v;
  }
  u32(what = 'u32'): number {
    this.#need(4, what);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  u64(what = 'u64'): bigint {
    this.#need(8, what);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }
  bytes(n: number, what = 'bytes'): Buffer {
    this.#need(n, what);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  rest(): Buffer {
    const v = this.buf.subarray(this.off);
    this.off = this.buf.length;
    return v;
  }
  /** NUL-terminated; `optional` accepts the end of the packet instead of a NUL. */
  cstr(what = 'string', optional = false): Buffer {
    const end = this.buf.indexOf(0, this.off);
    if (end < 0) {
      if (optional) return this.rest();
      throw new MysqlWireError('malformed', `${what} is not NUL-terminated`);
    }
    const v = this.buf.subarray(this.off, end);
    this.off = end + 1;
    return v;
  }
  /** Length-encoded integer; NULL (0xfb) is refused here. */
  lenenc(what = 'length'): number {
    const first = this.u8(what);
    if (first < 0xfb) return first;
    if (first === 0xfc) return this.u16(what);
    if (first === 0xfd) return this.u24(what);
    if (first === 0xfe) {
      const v = this.u64(what);
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new MysqlWireError('malformed', `${what} is too large`);
      return Number(v);
    }
    throw new MysqlWireError('malformed', `${what}: 0x${first.toString(16)} is not a length`);
  }
  lenencBytes(what = 'string'): Buffer {
    return this.bytes(this.lenenc(what), what);
  }
}

export function lenencInt(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n <= 0xffff) {
    const b = Buffer.alloc(3);
    b[0] = 0xfc;
    b.writeUInt16LE(n, 1);
    return b;
  }
  if (n <= 0xffffff) {
    const b = Buffer.alloc(4);
    b[0] = 0xfd;
    b.writeUIntLE(n, 1, 3);
    return b;
  }
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeBigUInt64LE(BigInt(n), 1);
  return b;
}

export function lenencBytes(b: Buffer): Buffer {
  return Buffer.concat([lenencInt(b.length), b]);
}

const NUL = Buffer.from([0]);

// --- ERR / OK --------------------------------------------------------------

export function encodeErr(seq: number, err: ErrSpec, message: string): Buffer {
  return errPacket(seq, err.code, `#${err.state.padEnd(5, '0').slice(0, 5)}`, message);
}

/**
 * An ERR sent in place of the server greeting (sequence 0), as a server
 * refuses a connection before the handshake ("Too many connections"). No
 * capabilities are agreed yet, so it carries no SQLSTATE marker: MySQL's
 * libmysqlclient reads the marker only once the greeting announced
 * CLIENT_PROTOCOL_41, and would print "#HY000" as part of the message (the
 * MariaDB client and mysql2 accept either). Clients report SQLSTATE HY000.
 */
export function encodeGreetingErr(code: number, message: string): Buffer {
  return errPacket(0, code, '', message);
}

function errPacket(seq: number, code: number, stateMarker: string, message: string): Buffer {
  const head = Buffer.alloc(3);
  head[0] = 0xff;
  head.writeUInt16LE(code, 1);
  // Clients print the message verbatim; keep it one reasonable line.
  return encodePacket(
    seq,
    Buffer.concat([head, Buffer.from(stateMarker, 'latin1'), Buffer.from(message.slice(0, 2000), 'utf8')]),
  );
}

export interface ErrPacket {
  code: number;
  state: string;
  message: string;
}

export function isErr(payload: Buffer): boolean {
  return payload[0] === 0xff;
}

export function parseErr(payload: Buffer): ErrPacket {
  const r = new Reader(payload);
  if (r.u8('ERR header') !== 0xff) throw new MysqlWireError('malformed', 'not an ERR packet');
  const code = r.u16('error code');
  let state = 'HY000';
  if (r.remaining > 0 && payload[r.off] === 0x23) {
    r.off++;
    state = r.bytes(5, 'SQLSTATE').toString('latin1');
  }
  return { code, state, message: r.rest().toString('utf8') };
}

export function isOk(payload: Buffer): boolean {
  return payload[0] === 0x00 && payload.length >= 7;
}

/** OK with PROTOCOL_41 fields: affected rows, insert id, status, warnings. */
export function encodeOk(seq: number, o: { status?: number; affectedRows?: number } = {}): Buffer {
  return encodePacket(
    seq,
    Buffer.concat([
      Buffer.from([0x00]),
      lenencInt(o.affectedRows ?? 0),
      lenencInt(0),
      Buffer.from([(o.status ?? 2) & 0xff, ((o.status ?? 2) >> 8) & 0xff, 0, 0]),
    ]),
  );
}

// --- Handshake -------------------------------------------------------------

export interface HandshakeV10 {
  serverVersion: string;
  connectionId: number;
  /** 20 bytes of scramble (both parts, without the trailing NUL). */
  authData: Buffer;
  capabilities: number;
  charset: number;
  status: number;
  authPlugin: string;
}

export function encodeHandshakeV10(h: HandshakeV10): Buffer {
  const caps = h.capabilities >>> 0;
  const head = Buffer.alloc(4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10);
  let o = 0;
  head.writeUInt32LE(h.connectionId >>> 0, o);
  o += 4;
  h.authData.copy(head, o, 0, 8);
  o += 8;
  head[o++] = 0;
  head.writeUInt16LE(caps & 0xffff, o);
  o += 2;
  head[o++] = h.charset;
  head.writeUInt16LE(h.status, o);
  o += 2;
  head.writeUInt16LE(caps >>> 16, o);
  o += 2;
  head[o++] = h.authData.length + 1;
  return Buffer.concat([
    Buffer.from([10]),
    Buffer.from(h.serverVersion, 'utf8'),
    NUL,
    head,
    h.authData.subarray(8),
    NUL,
    Buffer.from(h.authPlugin, 'latin1'),
    NUL,
  ]);
}

export function parseHandshakeV10(payload: Buffer): HandshakeV10 {
  const r = new Reader(payload);
  const proto = r.u8('protocol version');
  if (proto !== 10)
    throw new MysqlWireError('malformed', `server greeting has protocol version ${proto}, expected 10`);
  const serverVersion = r.cstr('server version').toString('utf8');
  const connectionId = r.u32('connection id');
  const part1 = Buffer.from(r.bytes(8, 'auth data'));
  r.u8('filler');
  let capabilities = r.u16('capabilities');
  const charset = r.remaining > 0 ? r.u8('charset') : 0;
  const status = r.remaining > 0 ? r.u16('status') : 0;
  capabilities = (capabilities | ((r.remaining > 0 ? r.u16('capabilities') : 0) << 16)) >>> 0;
  const authLen = r.remaining > 0 ? r.u8('auth data length') : 0;
  if (r.remaining > 0) r.bytes(10, 'reserved');
  let part2 = Buffer.alloc(0);
  if (capabilities & CLIENT.SECURE_CONNECTION && r.remaining > 0) {
    const n = Math.max(13, authLen - 8);
    part2 = Buffer.from(r.bytes(Math.min(n, r.remaining), 'auth data part 2'));
    if (part2[part2.length - 1] === 0) part2 = part2.subarray(0, part2.length - 1);
  }
  const authPlugin =
    capabilities & CLIENT.PLUGIN_AUTH && r.remaining > 0
      ? r.cstr('auth plugin', true).toString('latin1')
      : '';
  return {
    serverVersion,
    connectionId,
    authData: Buffer.concat([part1, part2]),
    capabilities,
    charset,
    status,
    authPlugin,
  };
}

export interface HandshakeResponse {
  capabilities: number;
  maxPacket: number;
  charset: number;
  user: string;
  authResponse: Buffer;
  database?: string | undefined;
  authPlugin?: string | undefined;
  /** Raw connect attributes block (lenenc total length + pairs), forwarded as is. */
  attrs?: Buffer | undefined;
}

/** SSLRequest is the first 32 bytes of a HandshakeResponse41 with CLIENT_SSL. */
export function isSslRequest(payload: Buffer): boolean {
  return payload.length === 32 && (payload.readUInt32LE(0) & CLIENT.SSL) !== 0;
}

export function encodeSslRequest(capabilities: number, charset: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE((capabilities | CLIENT.SSL) >>> 0, 0);
  b.writeUInt32LE(MAX_FRAME_PAYLOAD, 4);
  b[8] = charset;
  return b;
}

export function parseHandshakeResponse(payload: Buffer): HandshakeResponse {
  const r = new Reader(payload);
  const capabilities = r.u32('capabilities');
  if (!(capabilities & CLIENT.PROTOCOL_41)) {
    throw new MysqlWireError('malformed', 'client does not speak protocol 4.1 (HandshakeResponse41)');
  }
  const maxPacket = r.u32('max packet');
  const charset = r.u8('charset');
  r.bytes(23, 'reserved');
  const user = r.cstr('user name').toString('utf8');
  let authResponse: Buffer;
  if (capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = r.lenencBytes('auth response');
  else if (capabilities & CLIENT.SECURE_CONNECTION)
    authResponse = r.bytes(r.u8('auth length'), 'auth response');
  else authResponse = r.cstr('auth response');
  const out: HandshakeResponse = { capabilities, maxPacket, charset, user, authResponse };
  if (capabilities & CLIENT.CONNECT_WITH_DB && r.remaining > 0)
    out.database = r.cstr('database', true).toString('utf8');
  if (capabilities & CLIENT.PLUGIN_AUTH && r.remaining > 0)
    out.authPlugin = r.cstr('auth plugin', true).toString('latin1');
  if (capabilities & CLIENT.CONNECT_ATTRS && r.remaining > 0) {
    const start = r.off;
    const n = r.lenenc('attributes length');
    r.bytes(n, 'attributes');
    out.attrs = Buffer.from(payload.subarray(start, r.off));
  }
  return out;
}

export function encodeHandshakeResponse(h: HandshakeResponse): Buffer {
  const head = Buffer.alloc(32);
  head.writeUInt32LE(h.capabilities >>> 0, 0);
  head.writeUInt32LE(h.maxPacket >>> 0, 4);
  head[8] = h.charset;
  const parts: Buffer[] = [head, Buffer.from(h.user, 'utf8'), NUL];
  if (h.capabilities & CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA) parts.push(lenencBytes(h.authResponse));
  else if (h.capabilities & CLIENT.SECURE_CONNECTION)
    parts.push(Buffer.from([h.authResponse.length]), h.authResponse);
  else parts.push(h.authResponse, NUL);
  if (h.capabilities & CLIENT.CONNECT_WITH_DB) parts.push(Buffer.from(h.database ?? '', 'utf8'), NUL);
  if (h.capabilities & CLIENT.PLUGIN_AUTH) parts.push(Buffer.from(h.authPlugin ?? '', 'latin1'), NUL);
  if (h.capabilities & CLIENT.CONNECT_ATTRS) parts.push(h.attrs ?? Buffer.from([0]));
  return Buffer.concat(parts);
}

export interface AuthSwitchRequest {
  plugin: string;
  data: Buffer;
}

export function parseAuthSwitch(payload: Buffer): AuthSwitchRequest {
  const r = new Reader(payload);
  if (r.u8('auth switch header') !== 0xfe) throw new MysqlWireError('malformed', 'not an AuthSwitchRequest');
  const plugin = r.cstr('auth plugin', true).toString('latin1');
  return { plugin, data: r.rest() };
}

// --- Commands --------------------------------------------------------------

export interface ChangeUser {
  user: string;
  authResponse: Buffer;
  database: string;
  charset?: number | undefined;
  authPlugin?: string | undefined;
  attrs?: Buffer | undefined;
}

export type Command =
  | { type: 'quit' }
  | { type: 'query'; sql: string }
  | { type: 'init_db'; database: string }
  | { type: 'prepare'; sql: string }
  | { type: 'execute'; stmtId: number; payload: Buffer }
  | { type: 'send_long_data'; stmtId: number; paramId: number }
  | { type: 'stmt_close'; stmtId: number }
  | { type: 'stmt_reset'; stmtId: number }
  | { type: 'change_user'; change: ChangeUser }
  | { type: 'process_kill'; id: number }
  | { type: 'other'; command: number };

/** What the relay needs from a client command; other commands pass through untouched. */
export function parseCommand(payload: Buffer, capabilities: number): Command {
  const r = new Reader(payload);
  const cmd = r.u8('command');
  switch (cmd) {
    case COM.QUIT:
      return { type: 'quit' };
    case COM.QUERY:
      return { type: 'query', sql: r.rest().toString('utf8') };
    case COM.INIT_DB:
      return { type: 'init_db', database: r.rest().toString('utf8') };
    case COM.STMT_PREPARE:
      return { type: 'prepare', sql: r.rest().toString('utf8') };
    case COM.STMT_EXECUTE:
      return { type: 'execute', stmtId: r.u32('statement id'), payload };
    case COM.STMT_SEND_LONG_DATA:
      return { type: 'send_long_data', stmtId: r.u32('statement id'), paramId: r.u16('parameter id') };
    case COM.STMT_CLOSE:
      return { type: 'stmt_close', stmtId: r.u32('statement id') };
    case COM.STMT_RESET:
      return { type: 'stmt_reset', stmtId: r.u32('statement id') };
    case COM.CHANGE_USER:
      return { type: 'change_user', change: parseChangeUser(r, capabilities) };
    case COM.PROCESS_KILL:
      return { type: 'process_kill', id: r.u32('connection id') };
    default:
      return { type: 'other', command: cmd };
  }
}

function parseChangeUser(r: Reader, capabilities: number): ChangeUser {
  const user = r.cstr('user name').toString('utf8');
  const authResponse =
    capabilities & CLIENT.SECURE_CONNECTION
      ? r.bytes(r.u8('auth length'), 'auth response')
      : r.cstr('auth response');
  const database = r.cstr('database', true).toString('utf8');
  const out: ChangeUser = { user, authResponse, database };
  if (r.remaining >= 2) out.charset = r.u16('charset');
  if (capabilities & CLIENT.PLUGIN_AUTH && r.remaining > 0)
    out.authPlugin = r.cstr('auth plugin', true).toString('latin1');
  if (capabilities & CLIENT.CONNECT_ATTRS && r.remaining > 0) {
    const start = r.off;
    r.bytes(r.lenenc('attributes length'), 'attributes');
    out.attrs = Buffer.from(r.buf.subarray(start, r.off));
  }
  return out;
}

export function encodeChangeUser(c: ChangeUser, capabilities: number): Buffer {
  const parts: Buffer[] = [Buffer.from([COM.CHANGE_USER]), Buffer.from(c.user, 'utf8'), NUL];
  if (capabilities & CLIENT.SECURE_CONNECTION)
    parts.push(Buffer.from([c.authResponse.length]), c.authResponse);
  else parts.push(c.authResponse, NUL);
  parts.push(Buffer.from(c.database, 'utf8'), NUL);
  if (c.charset !== undefined) {
    const cs = Buffer.alloc(2);
    cs.writeUInt16LE(c.charset);
    parts.push(cs);
    if (capabilities & CLIENT.PLUGIN_AUTH) parts.push(Buffer.from(c.authPlugin ?? '', 'latin1'), NUL);
    if (capabilities & CLIENT.CONNECT_ATTRS && c.attrs) parts.push(c.attrs);
  }
  return Buffer.concat(parts);
}

export interface PrepareOk {
  stmtId: number;
  numColumns: number;
  numParams: number;
}

/** COM_STMT_PREPARE_OK: 0x00, statement id, columns, params, filler, warnings. */
export function parsePrepareOk(payload: Buffer): PrepareOk {
  const r = new Reader(payload);
  if (r.u8('status') !== 0x00) throw new MysqlWireError('malformed', 'not a COM_STMT_PREPARE_OK packet');
  const stmtId = r.u32('statement id');
  const numColumns = r.u16('column count');
  const numParams = r.u16('parameter count');
  return { stmtId, numColumns, numParams };
}
