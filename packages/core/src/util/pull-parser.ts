/**
 * What a pull decoder asks for next:
 * - `take`: exactly n bytes, handed back contiguous (keep n small: they are held in memory);
 * - `cstring`: the bytes before the next NUL (at most n of them), the NUL consumed;
 * - `stream`: the next n bytes, passed to `to` piece by piece as they arrive (never held);
 * - `streamCstring`: the bytes before the next NUL, passed to `to` piece by piece, the NUL consumed;
 * - `streamRest`: every byte up to the end of the message (for formats whose last field has no
 *   length of its own), resumed by `end()`.
 * The decoder is resumed with the bytes it asked for (an empty Buffer for the streamed kinds).
 */
export type Pull =
  | { take: number }
  | { cstring: number }
  | { stream: number; to: (piece: Buffer) => void }
  | { streamCstring: (piece: Buffer) => void }
  | { streamRest: (piece: Buffer) => void };

/** A message decoder written as a generator that pulls fields: it reads like a decoder of a whole message. */
export type PullDecoder<R> = Generator<Pull, R, Buffer>;

const EMPTY = Buffer.alloc(0);

/**
 * Runs a PullDecoder over a message that arrives in pieces, so a message far
 * larger than what the gateway may hold can still be decoded field by field:
 * only `take` and `cstring` fields are ever held, and the decoder bounds
 * those. No I/O. `fail` builds the protocol's own error for bytes that do not
 * fit the decoder (a string too long, bytes left over, a message too short).
 */
export class PullParser<R> {
  readonly #decoder: PullDecoder<R>;
  readonly #fail: (message: string) => Error;
  #need: Pull | undefined;
  #result: { value: R } | undefined;
  /** Bytes of the current `take`/`cstring` field gathered so far. */
  #parts: Buffer[] = [];
  #have = 0;
  /** Bytes of the current `stream` field still to pass on. */
  #left = 0;

  constructor(decoder: PullDecoder<R>, fail: (message: string) => Error) {
    this.#decoder = decoder;
    this.#fail = fail;
    this.#resume(EMPTY, true);
  }

  /** True once the decoder has everything it asked for. */
  get done(): boolean {
    return this.#result !== undefined;
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length) {
      const need = this.#need;
      if (!need) throw this.#fail(`has ${chunk.length - i} bytes after its contents`);
      if ('take' in need) {
        const n = Math.min(need.take - this.#have, chunk.length - i);
        this.#parts.push(chunk.subarray(i, i + n));
        this.#have += n;
        i += n;
        if (this.#have === need.take) this.#resume(this.#gathered());
      } else if ('cstring' in need) {
        const nul = chunk.indexOf(0, i);
        const end = nul < 0 ? chunk.length : nul;
        if (this.#have + (end - i) > need.cstring) {
          throw this.#fail(`has a string longer than ${need.cstring} bytes`);
        }
        this.#parts.push(chunk.subarray(i, end));
        this.#have += end - i;
        i = end;
        if (nul >= 0) {
          i++;
          this.#resume(this.#gathered());
        }
      } else if ('stream' in need) {
        const n = Math.min(this.#left, chunk.length - i);
        need.to(chunk.subarray(i, i + n));
        this.#left -= n;
        i += n;
        if (this.#left === 0) this.#resume(EMPTY);
      } else if ('streamRest' in need) {
        need.streamRest(chunk.subarray(i));
        i = chunk.length;
      } else {
        const nul = chunk.indexOf(0, i);
        const end = nul < 0 ? chunk.length : nul;
        if (end > i) need.streamCstring(chunk.subarray(i, end));
        i = end;
        if (nul >= 0) {
          i++;
          this.#resume(EMPTY);
        }
      }
    }
  }

  /** The decoded result; throws when the message ended before the decoder was satisfied. */
  end(): R {
    if (this.#need && 'streamRest' in this.#need) this.#resume(EMPTY);
    if (!this.#result) throw this.#fail('is shorter than its contents say');
    return this.#result.value;
  }

  #gathered(): Buffer {
    // One piece is a view of a chunk: copied, since the field may outlive the chunk.
    const b =
      this.#parts.length === 1
        ? Buffer.from(this.#parts[0] as Buffer)
        : Buffer.concat(this.#parts, this.#have);
    this.#parts = [];
    this.#have = 0;
    return b;
  }

  #resume(value: Buffer, first = false): void {
    for (;;) {
      const r = first ? this.#decoder.next() : this.#decoder.next(value);
      first = false;
      if (r.done) {
        this.#need = undefined;
        this.#result = { value: r.value };
        return;
      }
      const need = r.value;
      this.#need = need;
      const size =
        'take' in need ? need.take : 'cstring' in need ? need.cstring : 'stream' in need ? need.stream : 0;
      if (!(size >= 0)) throw this.#fail(`has a field of ${size} bytes`);
      // Fields of no bytes are satisfied at once.
      if ('take' in need && need.take === 0) value = EMPTY;
      else if ('stream' in need && need.stream === 0) value = EMPTY;
      else {
        if ('stream' in need) this.#left = need.stream;
        return;
      }
    }
  }
}
