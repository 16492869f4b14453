/**
 * SPDY/3.1 as a tap on a relayed exec/attach stream (kubectl with
 * KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false, or clients older than 1.30): bytes
 * in, frames out, no sockets or timers. It never alters the stream.
 *
 * Frames (draft-mbelshe-httpbis-spdy-00, SPDY/3.1): a control frame starts
 * with the bit 1, version 3, a 16-bit type, 8 flag bits and a 24-bit length;
 * a data frame starts with the bit 0 and a 31-bit stream id, then the same
 * flags and length. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib
 * streams with a fixed dictionary, one stream per direction for the whole
 * connection. For the remote-command protocol the client opens one SPDY
 * stream per channel and names it in the `streamtype` header.
 */
import zlib from 'node:zlib';
import { ByteQueue } from '@gatehouse/core/lite';

export class SpdyProtocolError extends Error {
  override readonly name = 'SpdyProtocolError';
}

export type SpdyFrame =
  | { kind: 'data'; streamId: number; fin: boolean; data: Buffer }
  | { kind: 'control'; type: number; flags: number; body: Buffer };

export const SYN_STREAM = 1;
export const SYN_REPLY = 2;
export const HEADERS = 8;

/** The SPDY/3 header compression dictionary: length-prefixed names, then a raw tail (spec section 2.6.10.1). */
// biome-ignore format: one table
const DICTIONARY_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host',
  'if-match', 'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified',
  'location', 'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer',
  'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via',
  'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url',
  'public', 'set-cookie', 'keep-alive', 'origin',
];
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request' +
  '401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented' +
  '503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ' +
  'Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,' +
  'application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=' +
  'gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

export const SPDY3_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.map((w) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    return Buffer.concat([len, Buffer.from(w, 'latin1')]);
  }),
  Buffer.from(DICTIONARY_TAIL, 'latin1'),
]);

/** Splits one direction of a SPDY connection into frames. */
export class SpdyFrameParser {
  readonly #maxFrame: number;
  readonly #buf = new ByteQueue();

  constructor(opts: { maxFrame?: number } = {}) {
    this.#maxFrame = opts.maxFrame ?? 16 * 1024 * 1024;
  }

  /** Feeds bytes; returns the frames completed by them. Throws SpdyProtocolError on a malformed stream. */
  push(chunk: Uint8Array): SpdyFrame[] {
    this.#buf.push(chunk);
    const out: SpdyFrame[] = [];
    for (;;) {
      const head = this.#buf.peek(8);
      if (!head) break;
      const length = head.readUIntBE(5, 3);
      if (length > this.#maxFrame) throw new SpdyProtocolError(`SPDY frame of ${length} bytes is too large`);
      // Not joined until the whole frame is here: chunks of a large frame are copied once.
      if (this.#buf.length < 8 + length) break;
      const b = this.#buf.take(8 + length);
      const body = b.subarray(8);
      const flags = b[4]!;
      if ((b[0]! & 0x80) !== 0) {
        const version = b.readUInt16BE(0) & 0x7fff;
        if (version !== 3) throw new SpdyProtocolError(`SPDY version ${version} is not 3`);
        out.push({ kind: 'control', type: b.readUInt16BE(2), flags, body });
      } else {
        out.push({
          kind: 'data',
          streamId: b.readUInt32BE(0) & 0x7fffffff,
          fin: (flags & 1) !== 0,
          data: body,
        });
      }
    }
    return out;
  }
}

/** Where the header block starts in a control frame's body, and the stream it names. */
export function headerBlockOf(frame: {
  type: number;
  body: Buffer;
}): { streamId: number; block: Buffer } | undefined {
  const at = frame.type === SYN_STREAM ? 10 : frame.type === SYN_REPLY || frame.type === HEADERS ? 4 : -1;
  if (at < 0) return undefined;
  if (frame.body.length < at) throw new SpdyProtocolError(`SPDY control frame ${frame.type} is truncated`);
  return { streamId: frame.body.readUInt32BE(0) & 0x7fffffff, block: frame.body.subarray(at) };
}

/**
 * Decompresses one direction's header blocks, in order. zlib's context spans
 * every block of the direction; Node's synchronous inflate has no persistent
 * context, so each block is decoded by inflating everything so far and
 * keeping the new output. The few header blocks of an exec session (one per
 * stream) make that cheap; `maxTotal` bounds it, compressed and decompressed.
 */
export class SpdyHeaderDecoder {
  readonly #maxTotal: number;
  #compressed: Buffer = Buffer.alloc(0);
  #seen = 0;

  constructor(opts: { maxTotal?: number } = {}) {
    this.#maxTotal = opts.maxTotal ?? 256 * 1024;
  }

  decode(block: Buffer): Map<string, string> {
    const all = Buffer.concat([this.#compressed, block]);
    if (all.length > this.#maxTotal)
      throw new SpdyProtocolError(`SPDY header blocks exceed ${this.#maxTotal} bytes`);
    let plain: Buffer;
    try {
      plain = zlib.inflateSync(all, {
        dictionary: SPDY3_DICTIONARY,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        // A few compressed bytes can inflate to gigabytes: the bound holds for the output too.
        maxOutputLength: this.#maxTotal,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new SpdyProtocolError(`SPDY header blocks exceed ${this.#maxTotal} bytes decompressed`);
      }
      throw new SpdyProtocolError(`SPDY header block does not decompress: ${(err as Error).message}`);
    }
    this.#compressed = all;
    const fresh = plain.subarray(this.#seen);
    this.#seen = plain.length;
    return parseHeaderBlock(fresh);
  }
}

/** An uncompressed header block: a 32-bit count, then length-prefixed names and values. */
export function parseHeaderBlock(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  const need = (at: number, n: number) => {
    if (at + n > b.length) throw new SpdyProtocolError('SPDY header block is truncated');
  };
  need(0, 4);
  const count = b.readUInt32BE(0);
  let p = 4;
  for (let i = 0; i < count; i++) {
    need(p, 4);
    const nl = b.readUInt32BE(p);
    need(p + 4, nl + 4);
    const name = b.toString('latin1', p + 4, p + 4 + nl).toLowerCase();
    p += 4 + nl;
    const vl = b.readUInt32BE(p);
    need(p + 4, vl);
    out.set(name, b.toString('utf8', p + 4, p + 4 + vl));
    p += 4 + vl;
  }
  return out;
}
