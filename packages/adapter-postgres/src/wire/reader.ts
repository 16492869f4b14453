import { PgWireError } from './errors.js';

/** PostgreSQL refuses messages of 1 GiB or more (PQ_LARGE_MESSAGE_LIMIT); so do we. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024 * 1024 - 1;

/** Inspected messages up to this size (type byte included) are held whole; larger ones stream. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

/**
 * What `MessageReader.push` hands out, in wire order:
 * - `message`: a whole message the caller asked to see (type byte, body without header, and its raw bytes);
 * - `raw`: bytes of messages the caller does not inspect, passed through as they arrive;
 * - `begin` + `body`: an inspected message over `maxBufferedBytes`, as it arrives: its 5 header
 *   bytes, then its body in pieces, `end` set on the piece that completes it.
 * Concatenating every segment's raw bytes (`raw`, `bytes`, `header`) gives back exactly the input.
 */
export type Segment =
  | { kind: 'message'; type: number; body: Buffer; raw: Buffer }
  | { kind: 'raw'; bytes: Buffer }
  | { kind: 'begin'; type: number; length: number; header: Buffer }
  | { kind: 'body'; bytes: Buffer; end: boolean };

export interface MessageReaderOptions {
  /** Largest accepted length field (which counts itself but not the type byte). */
  maxMessageBytes?: number;
  /** Which message types are read (handed out as `message`, or streamed as `begin` + `body`). */
  inspect: (type: number) => boolean;
  /**
   * Largest inspected message held whole in memory (type byte included).
   * A larger one streams if `stream` allows its type, and is refused otherwise.
   */
  maxBufferedBytes?: number;
  /** Inspected types that may stream past `maxBufferedBytes`. Default: none. */
  stream?: (type: number) => boolean;
  /** Which side sent these bytes, for error messages. */
  peer: string;
  /** Message types this direction may carry; any other type is refused. Default: all. */
  accept?: (type: number) => boolean;
}

/**
 * Splits a stream of typed PostgreSQL messages (`type:u8 length:i32 body`),
 * the format both directions use after startup. No I/O: bytes in, segments out.
 * Messages that are not inspected are never buffered, so a large COPY or
 * result set streams through with constant memory.
 */
export class MessageReader {
  readonly #max: number;
  readonly #inspect: (type: number) => boolean;
  readonly #peer: string;
  readonly #accept: (type: number) => boolean;
  readonly #maxBuffered: number;
  readonly #stream: (type: number) => boolean;
  /** Header bytes of the next message seen so far (fewer than 5). */
  #header = Buffer.alloc(0);
  /** Body bytes still to pass through for the current uninspected message. */
  #passRemaining = 0;
  /** The current inspected message being collected. */
  #collect: { type: number; raw: Buffer; filled: number } | undefined;
  /** Body bytes still to hand out for the current streamed message. */
  #streamRemaining = 0;

  constructor(opts: MessageReaderOptions) {
    this.#max = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#inspect = opts.inspect;
    this.#peer = opts.peer;
    this.#accept = opts.accept ?? (() => true);
    // Never below a header and a byte of body: a streamed message always has a body.
    this.#maxBuffered = Math.max(6, opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES);
    this.#stream = opts.stream ?? (() => false);
  }

  /** True between messages: nothing partial is pending. */
  get atBoundary(): boolean {
    return (
      this.#header.length === 0 &&
      this.#passRemaining === 0 &&
      this.#collect === undefined &&
      this.#streamRemaining === 0
    );
  }

  push(chunk: Buffer): Segment[] {
    const out: Segment[] = [];
    let rawStart = -1;
    const flushRaw = (end: number) => {
      if (rawStart >= 0 && end > rawStart) out.push({ kind: 'raw', bytes: chunk.subarray(rawStart, end) });
      rawStart = -1;
    };
    const markRaw = (at: number) => {
      if (rawStart < 0) rawStart = at;
    };
    let i = 0;
    while (i < chunk.length) {
      if (this.#passRemaining > 0) {
        const n = Math.min(this.#passRemaining, chunk.length - i);
        markRaw(i);
        i += n;
        this.#passRemaining -= n;
        continue;
      }
      if (this.#streamRemaining > 0) {
        const n = Math.min(this.#streamRemaining, chunk.length - i);
        this.#streamRemaining -= n;
        out.push({ kind: 'body', bytes: chunk.subarray(i, i + n), end: this.#streamRemaining === 0 });
        i += n;
        continue;
      }
      if (this.#collect) {
        const c = this.#collect;
        const n = Math.min(c.raw.length - c.filled, chunk.length - i);
        chunk.copy(c.raw, c.filled, i, i + n);
        c.filled += n;
        i += n;
        if (c.filled === c.raw.length) {
          this.#collect = undefined;
          out.push({ kind: 'message', type: c.type, body: c.raw.subarray(5), raw: c.raw });
        }
        continue;
      }
      // Reading a header: it may straddle chunks.
      const headerStart = i;
      const need = 5 - this.#header.length;
      const take = Math.min(need, chunk.length - i);
      const header =
        this.#header.length === 0 && take === 5
          ? chunk.subarray(i, i + 5)
          : Buffer.concat([this.#header, chunk.subarray(i, i + take)]);
      i += take;
      if (header.length < 5) {
        // Keep a partial header aside; if it belongs to a passthrough message
        // its bytes are emitted once the type is known.
        flushRaw(headerStart);
        this.#header = Buffer.from(header);
        continue;
      }
      const carried = this.#header;
      this.#header = Buffer.alloc(0);
      const type = header[0]!;
      const len = header.readInt32BE(1);
      if (!this.#accept(type)) {
        throw new PgWireError(`${this.#peer} sent unknown message type '${printable(type)}'`);
      }
      if (len < 4) {
        throw new PgWireError(
          `${this.#peer} sent message '${printable(type)}' with length ${len} (less than 4)`,
        );
      }
      if (len > this.#max) {
        throw new PgWireError(
          `${this.#peer} sent message '${printable(type)}' of ${len} bytes, over the ${this.#max}-byte limit`,
          { reason: 'oversized' },
        );
      }
      if (this.#inspect(type) && len + 1 > this.#maxBuffered) {
        if (!this.#stream(type)) {
          throw new PgWireError(
            `${this.#peer} sent message '${printable(type)}' of ${len} bytes, over the gateway's ${this.#maxBuffered}-byte limit for that message type`,
            { reason: 'oversized' },
          );
        }
        flushRaw(headerStart);
        out.push({ kind: 'begin', type, length: len, header });
        this.#streamRemaining = len - 4;
      } else if (this.#inspect(type)) {
        flushRaw(headerStart);
        if (carried.length === 0 && headerStart + len + 1 <= chunk.length) {
          // The whole message is in this chunk: hand out a view of it, no copy.
          const raw = chunk.subarray(headerStart, headerStart + len + 1);
          out.push({ kind: 'message', type, body: raw.subarray(5), raw });
          i = headerStart + len + 1;
          continue;
        }
        const raw = Buffer.allocUnsafe(len + 1);
        header.copy(raw, 0, 0, 5);
        this.#collect = { type, raw, filled: 5 };
        if (raw.length === 5) {
          this.#collect = undefined;
          out.push({ kind: 'message', type, body: raw.subarray(5), raw });
        }
      } else {
        if (carried.length > 0) {
          flushRaw(headerStart);
          out.push({ kind: 'raw', bytes: Buffer.from(carried) });
        }
        markRaw(headerStart);
        this.#passRemaining = len - 4;
      }
    }
    flushRaw(chunk.length);
    return out;
  }
}

export function printable(type: number): string {
  return type >= 0x20 && type < 0x7f ? String.fromCharCode(type) : `0x${type.toString(16).padStart(2, '0')}`;
}
