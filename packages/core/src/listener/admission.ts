import { isIP } from 'node:net';
import { netblock } from './ip.js';

/**
 * Who may start a handshake (docs/decisions/0018-listener-admission.md).
 * Pure bookkeeping with an injected clock: no sockets, no timers. The
 * listener asks before it spends anything on a connection (no byte read, no
 * TLS), and gives the slot back when the connection is routed or closes.
 */

export interface AdmissionLimits {
  /** Slots on this port for connections between accept and routing. */
  maxHandshakes: number;
  /** Slots one source block may hold at once (OpenSSH PerSourceMaxStartups). */
  perSourceMaxHandshakes: number;
  /**
   * Slots only known sources may take. Sources that are not known, and
   * connections whose source is not known yet (before a PROXY header), are
   * each held to the other `maxHandshakes - reservedForKnown`.
   */
  reservedForKnown: number;
}

export interface AdmissionRefusal {
  reason: 'too_many_handshakes' | 'too_many_handshakes_from_source';
  error: string;
}

export interface NetblockBits {
  ipv4: number;
  ipv6: number;
}

/**
 * Source blocks that recently proved who they are (a valid Gatehouse client
 * certificate, a successful login). Shared by every port of one gateway.
 * Bounded: past `max` entries the least recently vouched is forgotten.
 */
export class KnownSources {
  readonly #until = new Map<string, number>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #bits: NetblockBits;
  readonly #now: () => number;

  constructor(opts: { ttlMs: number; max: number; netblock: NetblockBits }, now: () => number) {
    this.#ttlMs = opts.ttlMs;
    this.#max = opts.max;
    this.#bits = opts.netblock;
    this.#now = now;
  }

  /** The block `addr` is counted in (per_source_netblock). */
  blockOf(addr: string): string {
    return netblock(addr, this.#bits);
  }

  /** `addr` authenticated just now. */
  vouch(addr: string): void {
    if (this.#max === 0) return;
    const block = this.blockOf(addr);
    // Re-inserting moves the block to the end: Map order is then least recently vouched first.
    this.#until.delete(block);
    this.#until.set(block, this.#now() + this.#ttlMs);
    for (const oldest of this.#until.keys()) {
      if (this.#until.size <= this.#max) break;
      this.#until.delete(oldest);
    }
  }

  has(block: string): boolean {
    const until = this.#until.get(block);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#until.delete(block);
    return false;
  }

  get size(): number {
    return this.#until.size;
  }
}

/** One admitted connection's hold on a handshake slot. */
export interface HandshakeSlot {
  /** The source block it is counted against; undefined while unattributed. */
  readonly source: string | undefined;
  readonly known: boolean;
  /**
   * The client's real address is now known (a trusted PROXY header, or first
   * bytes that are no PROXY header from a trusted address): counts the slot
   * against that source. A refusal gives the slot back; the caller closes.
   * Does nothing once attributed.
   */
  attribute(addr: string): AdmissionRefusal | undefined;
  /** Routed or closed. Idempotent. */
  release(): void;
}

type Admit = { ok: true; slot: HandshakeSlot } | { ok: false; refusal: AdmissionRefusal };

/** The handshake slots of one port. */
export class Admission {
  readonly #limits: AdmissionLimits;
  readonly #known: KnownSources;
  #pending = 0;
  /** Held by sources that are not known. */
  #unknown = 0;
  /** Held by connections from a trusted proxy that has not said for whom yet. */
  #unattributed = 0;
  /** Per source block; at most maxHandshakes entries, since every entry holds a slot. */
  readonly #perSource = new Map<string, number>();

  constructor(limits: AdmissionLimits, known: KnownSources) {
    if (limits.reservedForKnown >= limits.maxHandshakes)
      throw new RangeError('reservedForKnown must be below maxHandshakes');
    this.#limits = limits;
    this.#known = known;
  }

  get pending(): number {
    return this.#pending;
  }
  get unknown(): number {
    return this.#unknown;
  }
  get unattributed(): number {
    return this.#unattributed;
  }
  /** Source blocks holding at least one slot. */
  get sources(): number {
    return this.#perSource.size;
  }

  /**
   * A connection from `addr`. `attributed: false` for a trusted proxy's
   * address: the proxy is not a source, so it is held only to the
   * unattributed share until its PROXY header names the client. So is a
   * connection without an IP address (a Unix socket handed to handle()).
   */
  admit(addr: string, opts: { attributed: boolean }): Admit {
    const l = this.#limits;
    if (this.#pending >= l.maxHandshakes) {
      return {
        ok: false,
        refusal: {
          reason: 'too_many_handshakes',
          error: `all ${l.maxHandshakes} handshake slots are taken (listener.max_concurrent_handshakes)`,
        },
      };
    }
    // No IP address (a Unix socket handed to handle()): nothing to count per source.
    if (!opts.attributed || !isIP(addr)) {
      if (this.#unattributed >= this.#openShare()) {
        return {
          ok: false,
          refusal: {
            reason: 'too_many_handshakes',
            error: `${this.#openShare()} connections from trusted proxies are waiting for their PROXY header`,
          },
        };
      }
      this.#pending++;
      this.#unattributed++;
      return { ok: true, slot: this.#slot(undefined, false) };
    }
    const block = this.#known.blockOf(addr);
    const known = this.#known.has(block);
    const refusal = this.#check(block, known);
    if (refusal) return { ok: false, refusal };
    this.#pending++;
    this.#count(block, known, +1);
    return { ok: true, slot: this.#slot(block, known) };
  }

  /** Slots a source that is not known may take: all but the reserve. */
  #openShare(): number {
    return this.#limits.maxHandshakes - this.#limits.reservedForKnown;
  }

  #check(block: string, known: boolean): AdmissionRefusal | undefined {
    const l = this.#limits;
    const held = this.#perSource.get(block) ?? 0;
    if (held >= l.perSourceMaxHandshakes) {
      return {
        reason: 'too_many_handshakes_from_source',
        error: `${held} connections from ${block} are already handshaking (listener.per_source_max_handshakes)`,
      };
    }
    if (!known && this.#unknown >= this.#openShare()) {
      return {
        reason: 'too_many_handshakes',
        error:
          `the ${this.#openShare()} handshake slots open to any address are taken; ` +
          `${l.reservedForKnown} are kept for addresses that recently authenticated (listener.known_sources)`,
      };
    }
    return undefined;
  }

  #count(block: string, known: boolean, delta: 1 | -1): void {
    if (!known) this.#unknown += delta;
    const n = (this.#perSource.get(block) ?? 0) + delta;
    if (n > 0) this.#perSource.set(block, n);
    else this.#perSource.delete(block);
  }

  #slot(initialBlock: string | undefined, initialKnown: boolean): HandshakeSlot {
    let block = initialBlock;
    let known = initialKnown;
    let released = false;
    const slot: HandshakeSlot = {
      get source() {
        return block;
      },
      get known() {
        return known;
      },
      attribute: (addr) => {
        if (released || block !== undefined || !isIP(addr)) return undefined;
        const b = this.#known.blockOf(addr);
        const k = this.#known.has(b);
        const refusal = this.#check(b, k);
        if (refusal) {
          slot.release();
          return refusal;
        }
        this.#unattributed--;
        block = b;
        known = k;
        this.#count(b, k, +1);
        return undefined;
      },
      release: () => {
        if (released) return;
        released = true;
        this.#pending--;
        if (block === undefined) this.#unattributed--;
        else this.#count(block, known, -1);
      },
    };
    return slot;
  }
}
