import { Duplex } from 'node:stream';

/**
 * One end of an in-memory connection: what it writes, its peer reads. A
 * write completes once the peer has room for it (backpressure); ending one
 * side ends the peer's readable side, and like a TCP socket (allowHalfOpen
 * false) the peer then ends too; destroying one side closes both.
 */
class PairEnd extends Duplex {
  peer!: PairEnd;
  /** This side's write waiting until the peer reads again. */
  #waiting: (() => void) | undefined;

  constructor() {
    super({ allowHalfOpen: false });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.peer.push(chunk)) callback();
    else this.#waiting = () => callback();
  }

  override _read(): void {
    const resume = this.peer.#waiting;
    this.peer.#waiting = undefined;
    resume?.();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.peer.push(null);
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#waiting = undefined;
    if (!this.peer.destroyed) this.peer.destroy();
    callback(err);
  }
}

/** Two connected in-memory streams (Node 20 has no stream.duplexPair). */
export function duplexPair(): [Duplex, Duplex] {
  const a = new PairEnd();
  const b = new PairEnd();
  a.peer = b;
  b.peer = a;
  return [a, b];
}
