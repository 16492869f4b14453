import type { Duplex } from 'node:stream';
import { type Packet, PacketDecoder } from './wire/codec.js';

/**
 * Reads whole packets from a socket during the handshake phases (the relay
 * phase reads its own). `detach()` hands the socket back with any bytes the
 * decoder had not consumed, e.g. a TLS ClientHello right after SSLRequest.
 */
export class PacketChannel {
  readonly socket: Duplex;
  readonly decoder: PacketDecoder;
  #waiter: { resolve: (p: Packet) => void; reject: (e: Error) => void } | undefined;
  #error: Error | undefined;
  #attached = true;

  constructor(socket: Duplex, maxPacketBytes: number) {
    this.socket = socket;
    this.decoder = new PacketDecoder({ maxPacketBytes });
    socket.on('data', this.#onData);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    socket.on('end', this.#onClose);
  }

  #onData = (chunk: Buffer) => {
    this.decoder.feed(chunk);
    this.#deliver();
  };
  // A socket error (a reset, a broken pipe) is the client going away, like a close.
  #onError = (e: Error) => this.fail(new ConnectionClosed(e));
  #onClose = () => this.fail(new ConnectionClosed());

  #deliver(): void {
    if (!this.#waiter) return;
    let p: Packet | undefined;
    try {
      p = this.decoder.read();
    } catch (e) {
      if (!this.#error) this.#error = e as Error;
    }
    const w = this.#waiter;
    if (p) {
      this.#waiter = undefined;
      w.resolve(p);
    } else if (this.#error) {
      this.#waiter = undefined;
      w.reject(this.#error);
    }
  }

  /** Makes the pending and every later next() reject (deadline, close, bad bytes). */
  fail(e: Error): void {
    if (!this.#error) this.#error = e;
    this.#deliver();
  }

  next(): Promise<Packet> {
    if (this.#waiter) return Promise.reject(new Error('PacketChannel.next() called twice'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#deliver();
    });
  }

  /** Stops reading; returns the bytes not yet handed out as packets. */
  detach(): Buffer {
    if (this.#attached) {
      this.#attached = false;
      this.socket.pause();
      this.socket.off('data', this.#onData);
      this.socket.off('error', this.#onError);
      this.socket.off('close', this.#onClose);
      this.socket.off('end', this.#onClose);
    }
    return this.decoder.takeRemainder();
  }
}

export class ConnectionClosed extends Error {
  constructor(cause?: Error) {
    super(cause ? `connection closed: ${cause.message}` : 'connection closed', cause ? { cause } : undefined);
    this.name = 'ConnectionClosed';
  }
}
