/**
 * Bytes received but not yet parsed, for incremental codecs. Chunks are kept
 * as they arrive and joined only when a parser asks for bytes that span
 * several, so a message that trickles in as many small chunks costs one copy,
 * not one copy of everything buffered per chunk (quadratic in its size).
 * Pure: no I/O.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /** Appends a chunk (kept as a view, not copied). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#length += chunk.length;
  }

  /**
   * The first `n` bytes as one buffer, left in the queue; undefined while
   * fewer are held. Joins only the leading chunks it needs, once.
   */
  peek(n: number): Buffer | undefined {
    if (n > this.#length) return undefined;
    if (n === 0) return Buffer.alloc(0);
    let first = this.#chunks[0] as Buffer;
    if (first.length < n) {
      let k = 0;
      let got = 0;
      while (got < n) got += (this.#chunks[k++] as Buffer).length;
      first = Buffer.concat(this.#chunks.slice(0, k), got);
      this.#chunks.splice(0, k, first);
    }
    return first.subarray(0, n);
  }

  /** Removes and returns the first `n` bytes (at most `length`). */
  take(n: number): Buffer {
    const out = this.peek(Math.min(n, this.#length)) as Buffer;
    const first = this.#chunks[0];
    if (first !== undefined && out.length > 0) {
      if (first.length === out.length) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(out.length);
    }
    this.#length -= out.length;
    return out;
  }
}
