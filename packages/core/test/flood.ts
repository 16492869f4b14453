import net from 'node:net';
import { waitFor } from './helpers.js';

export interface FloodOptions {
  port: number;
  /** Local addresses the attacker binds (Linux loopback accepts all of 127/8); connections go round them. */
  from: string[];
  /** Connections that send nothing. */
  idle: number;
  /** Connections that send `trickleBytes` one byte every `trickleEveryMs`. */
  trickle?: number;
  trickleEveryMs?: number;
  /** Default: the start of a TLS ClientHello (the record header is complete after 3 bytes). */
  trickleBytes?: Buffer;
  /** Optional bytes each connection sends first (e.g. a PROXY header), before idling or trickling. */
  preamble?: (i: number) => Buffer | undefined;
}

export interface FloodStats {
  /** Connections the gateway accepted (connected, or reset by it before we saw the connect). */
  reached: number;
  /** Of those, how many the gateway closed before the attack stopped (all of them, after stop()). */
  closedByServer: number;
  /** Connections that sent a byte after their first (trickle). */
  trickled: number;
  /** Connections that got any byte from the gateway (e.g. MySQL's greeting). */
  answered: number;
  /** Attempts that never reached the gateway (local errors), by error code. */
  failed: Record<string, number>;
}

/**
 * What a flood tool does to a listener: holds `idle + trickle` connections
 * from the given addresses, and replaces each one the moment the gateway
 * closes it. The flood never closes a connection itself, so stop() waits for
 * the gateway to end every one of them (refusals at once, the rest at their
 * deadlines): a deadline that trickled bytes extend would make it hang.
 */
export class Flood {
  readonly #o: Required<Omit<FloodOptions, 'preamble'>> & Pick<FloodOptions, 'preamble'>;
  readonly #live = new Set<net.Socket>();
  readonly stats: FloodStats = { reached: 0, closedByServer: 0, trickled: 0, answered: 0, failed: {} };
  #stopped = false;

  constructor(o: FloodOptions) {
    this.#o = {
      trickle: 0,
      trickleEveryMs: 1_000,
      trickleBytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50, 0x01, 0x00, 0x00, 0x4c, 0x03, 0x03]),
      ...o,
    };
    for (let i = 0; i < this.#o.idle; i++) this.#open(i, false);
    for (let i = 0; i < this.#o.trickle; i++) this.#open(this.#o.idle + i, true);
  }

  #open(i: number, trickling: boolean): void {
    if (this.#stopped) return;
    const o = this.#o;
    const s = net.connect({ host: '127.0.0.1', port: o.port, localAddress: o.from[i % o.from.length] });
    this.#live.add(s);
    let reached = false;
    let answered = false;
    let timer: NodeJS.Timeout | undefined;
    const reach = () => {
      if (reached) return;
      reached = true;
      this.stats.reached++;
    };
    s.on('connect', () => {
      reach();
      const pre = o.preamble?.(i);
      if (pre) s.write(pre);
      if (!trickling) return;
      let next = 0;
      const send = () => {
        s.write(o.trickleBytes.subarray(next % o.trickleBytes.length, (next % o.trickleBytes.length) + 1));
        if (next === 1) this.stats.trickled++;
        next++;
      };
      send();
      timer = setInterval(send, o.trickleEveryMs);
    });
    s.on('data', () => {
      if (answered) return;
      answered = true;
      this.stats.answered++;
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      // A reset is the gateway refusing (possibly before our connect callback ran).
      if (e.code === 'ECONNRESET' || e.code === 'EPIPE') reach();
      else if (!reached)
        this.stats.failed[e.code ?? e.message] = (this.stats.failed[e.code ?? e.message] ?? 0) + 1;
    });
    s.on('close', () => {
      clearInterval(timer);
      this.#live.delete(s);
      if (reached) this.stats.closedByServer++;
      // A flood tool reconnects at once; setImmediate lets the event loop breathe.
      if (!this.#stopped) setImmediate(() => this.#open(i, trickling));
    });
  }

  /** Waits until the gateway has closed at least `n` of our connections (the flood is on). */
  async until(n: number, ms = 30_000): Promise<void> {
    await waitFor(() => this.stats.closedByServer >= n || undefined, `${n} flood connections closed`, ms);
  }

  /** Stops reconnecting and waits until the gateway has closed every connection still open. */
  async stop(ms = 30_000): Promise<FloodStats> {
    this.#stopped = true;
    try {
      await waitFor(
        () => this.#live.size === 0 || undefined,
        'the gateway to close the flood connections',
        ms,
      );
    } catch (err) {
      const states: Record<string, number> = {};
      for (const s of this.#live) states[s.readyState] = (states[s.readyState] ?? 0) + 1;
      throw new Error(`${(err as Error).message}: ${this.#live.size} still open ${JSON.stringify(states)}`);
    }
    return this.stats;
  }

  /** Test cleanup after a failure: ends our side too. */
  destroy(): void {
    this.#stopped = true;
    for (const s of this.#live) s.destroy();
  }
}
