/** Thrown by the SSH/SFTP codecs for bytes that do not parse; never anything else. */
export class WireError extends Error {
  override name = 'WireError';
}

/** Reads SSH wire types (RFC 4251 §5) from one buffer. No I/O. */
export class SshReader {
  readonly #b: Buffer;
  #o = 0;

  constructor(b: Buffer) {
    this.#b = b;
  }

  get offset(): number {
    return this.#o;
  }

  get done(): boolean {
    return this.#o === this.#b.length;
  }

  get remaining(): number {
    return this.#b.length - this.#o;
  }

  byte(): number {
    if (this.#o + 1 > this.#b.length) throw new WireError('truncated byte');
    return this.#b[this.#o++]!;
  }

  u32(): number {
    if (this.#o + 4 > this.#b.length) throw new WireError('truncated uint32');
    const v = this.#b.readUInt32BE(this.#o);
    this.#o += 4;
    return v;
  }

  u64(): bigint {
    if (this.#o + 8 > this.#b.length) throw new WireError('truncated uint64');
    const v = this.#b.readBigUInt64BE(this.#o);
    this.#o += 8;
    return v;
  }

  string(): Buffer {
    const n = this.u32();
    if (this.#o + n > this.#b.length) throw new WireError('string overruns the packet');
    const v = this.#b.subarray(this.#o, this.#o + n);
    this.#o += n;
    return v;
  }

  text(): string {
    return this.string().toString('utf8');
  }
}
