import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

/**
 * A hand-driven client connection for the stage matrix (stages.test.ts):
 * it speaks just enough of a protocol to reach a stage, then misbehaves.
 * Every probe connects from its own loopback address (127.0.0.0/8 is all
 * local on Linux), so the gateway's audit events name the case that caused
 * them.
 */
export class Probe {
  readonly raw: net.Socket;
  /** Where protocol bytes go now: the TCP socket, or TLS on top of it. */
  top: Duplex;
  /** Bytes received on `top` since the last mark(). */
  data = Buffer.alloc(0);
  /** The server ended or reset the connection (before we closed it ourselves). */
  closedByServer = false;
  /** What the client library reported (a TLS alert, a reset), if anything. */
  errors: string[] = [];
  #closed = false;
  #weClosed = false;
  readonly #waiters = new Set<() => void>();

  private constructor(raw: net.Socket) {
    this.raw = raw;
    this.top = raw;
    this.#listen(raw);
    raw.on('close', () => {
      this.#closed = true;
      if (!this.#weClosed) this.closedByServer = true;
      this.#wake();
    });
  }

  /** TCP to 127.0.0.1:port from `from` (a loopback address). */
  static connect(port: number, from: string): Promise<Probe> {
    return new Promise((resolve, reject) => {
      const raw = net.connect({ host: '127.0.0.1', port, localAddress: from, noDelay: true });
      raw.once('error', reject);
      raw.once('connect', () => {
        raw.off('error', reject);
        resolve(new Probe(raw));
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  #listen(s: Duplex): void {
    s.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.#wake();
    });
    s.on('end', () => {
      if (!this.#weClosed) this.closedByServer = true;
      this.#wake();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      this.errors.push(e.code ?? e.message);
      if (!this.#weClosed) this.closedByServer = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Forgets what was received so far (the next expectations are about what follows). */
  mark(): void {
    this.data = Buffer.alloc(0);
  }

  write(b: Buffer | string): void {
    if (!this.top.destroyed && this.top.writable) this.top.write(b);
  }

  /** Resolves once `done()` holds (checked on every event), or with false after `ms`. */
  until(done: () => boolean, ms: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(done()), ms);
      const finish = (v: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      this.#waiters.add(check);
    });
  }

  /** Waits until the received bytes satisfy `ok`; throws with what arrived instead. */
  async expect(ok: (b: Buffer) => boolean, what: string, ms = 10_000): Promise<Buffer> {
    if (await this.until(() => ok(this.data) || this.#closed, ms)) {
      if (ok(this.data)) return this.data;
    }
    throw new Error(
      `expected ${what}; got ${JSON.stringify(this.data.toString('latin1').slice(0, 200))}` +
        `${this.#closed ? ' and the connection closed' : ''}${this.errors.length ? ` (${this.errors.join(', ')})` : ''}`,
    );
  }

  /** Waits for the server to close (FIN, reset or close); false if it is still open after `ms`. */
  serverClosed(ms: number): Promise<boolean> {
    return this.until(() => this.closedByServer || this.#closed, ms);
  }

  /** Starts TLS on the connection (on top of whatever carries bytes now). */
  async startTls(opts: tls.ConnectionOptions, ms = 10_000): Promise<tls.TLSSocket> {
    this.top.removeAllListeners('data');
    this.top.removeAllListeners('end');
    this.top.removeAllListeners('error');
    this.top.on('error', () => undefined);
    const s = tls.connect({ socket: this.top as net.Socket, rejectUnauthorized: false, ...opts });
    this.top = s;
    this.#listen(s);
    let secure = false;
    s.once('secureConnect', () => {
      secure = true;
      this.#wake();
    });
    await this.until(() => secure || this.#closed || this.closedByServer, ms);
    if (!secure) throw new Error(`TLS handshake did not finish (${this.errors.join(', ') || 'no error'})`);
    return s;
  }

  /** Sends `bytes` one at a time, `everyMs` apart, until they run out or the connection closes. */
  async trickle(bytes: Buffer, everyMs: number): Promise<void> {
    for (const b of bytes) {
      if (this.#closed || this.closedByServer) return;
      this.write(Buffer.from([b]));
      if (await this.until(() => this.#closed || this.closedByServer, everyMs)) return;
    }
  }

  /** Sends `bytes` again and again, `everyMs` apart, until the connection closes. */
  async repeat(bytes: Buffer, everyMs: number): Promise<void> {
    while (!this.#closed && !this.closedByServer) {
      this.write(bytes);
      await this.until(() => this.#closed || this.closedByServer, everyMs);
    }
  }

  /** A TCP reset (RST), as a crashing client or a middlebox sends. */
  reset(): void {
    this.#weClosed = true;
    this.raw.resetAndDestroy();
  }

  /** A half-close: our FIN (after TLS close_notify when TLS is up), the socket still reading. */
  fin(): void {
    this.top.end();
  }

  /** Our own cleanup after the case: nothing that happens next is the server's doing. */
  close(): void {
    this.#weClosed = true;
    this.raw.destroy();
  }
}

/**
 * The first flight of a real client (Node's TLS stack, as the CLI sends it):
 * the ClientHello record(s), captured from a local server that answers nothing.
 */
export async function captureClientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      server.once('connection', (s) => {
        let buf = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
            resolve(buf.subarray(0, 5 + buf.readUInt16BE(3)));
            s.destroy();
          }
        });
      });
      const c = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
      c.on('error', () => undefined);
      c.on('close', () => reject(new Error('no ClientHello')));
    });
  } finally {
    server.close();
  }
}

// PostgreSQL frontend messages (the few a probe sends).
export const pg = {
  sslRequest: Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
  startup(params: Record<string, string>): Buffer {
    const body = Buffer.concat([
      ...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
      Buffer.from([0]),
    ]);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length + 8, 0);
    head.writeUInt32BE(196608, 4);
    return Buffer.concat([head, body]);
  },
  cancel(pid: number, secret: number): Buffer {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(16, 0);
    b.writeUInt32BE(80877102, 4);
    b.writeUInt32BE(pid, 8);
    b.writeUInt32BE(secret, 12);
    return b;
  },
  /** A typed message: type byte, length, body. */
  message(type: string, body: Buffer | string): Buffer {
    const b = Buffer.from(body);
    const head = Buffer.alloc(5);
    head[0] = type.charCodeAt(0);
    head.writeUInt32BE(b.length + 4, 1);
    return Buffer.concat([head, b]);
  },
  /** Only a header: a message of `len` bytes, none of which follow. */
  header(type: string, len: number): Buffer {
    const head = Buffer.alloc(5);
    head[0] = type.charCodeAt(0);
    head.writeUInt32BE(len >>> 0, 1);
    return head;
  },
  /** An ErrorResponse ('E') among the bytes; its message field. */
  errorMessage(b: Buffer): string | undefined {
    for (let i = 0; i + 5 <= b.length; ) {
      const len = b.readUInt32BE(i + 1);
      if (b[i] === 0x45 && i + 1 + len <= b.length) {
        const fields = b
          .subarray(i + 5, i + 1 + len)
          .toString('utf8')
          .split('\0');
        return fields.find((f) => f.startsWith('M'))?.slice(1);
      }
      if (len < 4) return undefined;
      i += 1 + len;
    }
    return undefined;
  },
  /** ReadyForQuery ('Z') among the bytes. */
  ready(b: Buffer): boolean {
    for (let i = 0; i + 5 <= b.length; ) {
      if (b[i] === 0x5a) return true;
      const len = b.readUInt32BE(i + 1);
      if (len < 4) return false;
      i += 1 + len;
    }
    return false;
  },
};

/** MySQL packets: 3-byte little-endian length, sequence id, payload. */
export const my = {
  packet(seq: number, payload: Buffer): Buffer {
    const h = Buffer.alloc(4);
    h.writeUIntLE(payload.length, 0, 3);
    h[3] = seq;
    return Buffer.concat([h, payload]);
  },
  /** Only a header: a packet of `len` bytes, none of which follow. */
  header(seq: number, len: number): Buffer {
    const h = Buffer.alloc(4);
    h.writeUIntLE(len, 0, 3);
    h[3] = seq;
    return h;
  },
  /** The whole packets among the bytes. */
  packets(b: Buffer): { seq: number; payload: Buffer }[] {
    const out: { seq: number; payload: Buffer }[] = [];
    for (let i = 0; i + 4 <= b.length; ) {
      const len = b.readUIntLE(i, 3);
      if (i + 4 + len > b.length) break;
      out.push({ seq: b[i + 3]!, payload: b.subarray(i + 4, i + 4 + len) });
      i += 4 + len;
    }
    return out;
  },
  /** An ERR packet among the bytes: its code and message. */
  err(b: Buffer): { code: number; message: string } | undefined {
    const p = my.packets(b).find((x) => x.payload[0] === 0xff);
    if (!p) return undefined;
    const code = p.payload.readUInt16LE(1);
    const msg = p.payload.subarray(p.payload[3] === 0x23 ? 9 : 3).toString('utf8');
    return { code, message: msg };
  },
};

/** RFC 6455 frames as a client sends them (masked unless told otherwise). */
export function wsFrame(
  opcode: number,
  payload: Buffer,
  opts: { mask?: boolean; fin?: boolean; declaredLength?: number } = {},
): Buffer {
  const mask = opts.mask ?? true;
  const len = opts.declaredLength ?? payload.length;
  const head: number[] = [((opts.fin ?? true) ? 0x80 : 0) | opcode];
  const m = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (len < 126) head.push(m | len);
  else if (len < 65536) {
    head.push(m | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(len);
  } else {
    head.push(m | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(len));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, payload]);
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(payload.map((b, i) => b ^ key[i % 4]!));
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

/** The opcodes of the whole server frames among the bytes (from `from` on, e.g. past a 101 answer). */
export function wsOpcodes(b: Buffer, from = 0): number[] {
  const out: number[] = [];
  for (let i = from; i + 2 <= b.length; ) {
    let len = b[i + 1]! & 0x7f;
    let off = i + 2;
    if (len === 126) {
      if (off + 2 > b.length) break;
      len = b.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (off + 8 > b.length) break;
      len = Number(b.readBigUInt64BE(off));
      off += 8;
    }
    if (off + len > b.length) break;
    out.push(b[i]! & 0x0f);
    i = off + len;
  }
  return out;
}

/** A server's close frame among the bytes: its status code. */
export function wsCloseCode(b: Buffer): number | undefined {
  for (let i = 0; i + 2 <= b.length; ) {
    const opcode = b[i]! & 0x0f;
    let len = b[i + 1]! & 0x7f;
    let off = i + 2;
    if (len === 126) {
      if (off + 2 > b.length) return undefined;
      len = b.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (off + 8 > b.length) return undefined;
      len = Number(b.readBigUInt64BE(off));
      off += 8;
    }
    if (off + len > b.length) return undefined;
    if (opcode === 0x8) return len >= 2 ? b.readUInt16BE(off) : 1005;
    i = off + len;
  }
  return undefined;
}

/** An unencrypted SSH binary packet (before NEWKEYS): length, padding length, payload, padding. */
export function sshPacket(payload: Buffer): Buffer {
  let pad = 8 - ((payload.length + 5) % 8);
  if (pad < 4) pad += 8;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length + pad + 1, 0);
  head[4] = pad;
  return Buffer.concat([head, payload, Buffer.alloc(pad)]);
}

/** Bytes that are no protocol at all (fixed, so a failure replays the same way). */
export const GARBAGE = Buffer.from(
  '\xff\xfe\x00\x01garbage\r\n\x16\x03\x09\x00\x00\xde\xad\xbe\xef\x00\x00\x00\x00%s%n{}\r\n\r\n'.repeat(4),
  'latin1',
);
