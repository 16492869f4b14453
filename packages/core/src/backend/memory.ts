import { type Clock, systemClock } from '../clock.js';
import {
  alreadyExists,
  checkKey,
  checkRange,
  checkValue,
  closedError,
  compareKeys,
  conflict,
  expiryFrom,
  makeItem,
  Waiters,
} from './keys.js';
import type { Backend, Item, PutOptions, RangeOptions, WatchEvent, WatchOptions } from './types.js';

export interface MemoryBackendOptions {
  clock?: Clock;
  /** How often expired items are swept (and reported to watchers); 0 disables the timer. Default 1000. */
  sweepIntervalMs?: number;
}

interface Row {
  value: string;
  revision: number;
  expires: number | null;
}

interface Subscriber {
  prefix: string;
  queue: WatchEvent[];
}

/** In-process backend for unit tests and `createGateway({ backend: 'memory' })`. Nothing survives close. */
export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  readonly #clock: Clock;
  readonly #rows = new Map<string, Row>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #waiters = new Waiters();
  readonly #sweeper: NodeJS.Timeout | undefined;
  #revision = 0;
  #closed = false;

  constructor(opts: MemoryBackendOptions = {}) {
    this.#clock = opts.clock ?? systemClock;
    const interval = opts.sweepIntervalMs ?? 1000;
    if (interval > 0) {
      this.#sweeper = setInterval(() => this.#sweep(), interval);
      this.#sweeper.unref();
    }
  }

  async get(key: string): Promise<Item | undefined> {
    this.#open();
    checkKey(key);
    const row = this.#live(key, this.#now());
    return row && makeItem(key, row.value, row.revision, row.expires);
  }

  async put(key: string, value: string, opts?: PutOptions): Promise<Item> {
    this.#open();
    checkKey(key);
    checkValue(value);
    const now = this.#now();
    const expires = expiryFrom(now, opts);
    this.#expireIfDue(key, now);
    return this.#write(key, value, expires);
  }

  async create(key: string, value: string, opts?: PutOptions): Promise<Item> {
    this.#open();
    checkKey(key);
    checkValue(value);
    const now = this.#now();
    const expires = expiryFrom(now, opts);
    if (this.#expireIfDue(key, now)) throw alreadyExists(key);
    return this.#write(key, value, expires);
  }

  async compareAndSwap(
    key: string,
    expectedRevision: number | null,
    value: string,
    opts?: PutOptions,
  ): Promise<Item> {
    this.#open();
    checkKey(key);
    checkValue(value);
    const now = this.#now();
    const expires = expiryFrom(now, opts);
    const actual = this.#expireIfDue(key, now)?.revision ?? null;
    if (actual !== expectedRevision) throw conflict(key, expectedRevision, actual);
    return this.#write(key, value, expires);
  }

  async delete(key: string): Promise<boolean> {
    this.#open();
    checkKey(key);
    if (!this.#expireIfDue(key, this.#now())) return false;
    this.#remove(key);
    return true;
  }

  async range(prefix: string, opts?: RangeOptions): Promise<Item[]> {
    this.#open();
    checkRange(opts);
    const now = this.#now();
    const after = opts?.startAfter;
    const keys = [...this.#rows.keys()]
      .filter((k) => k.startsWith(prefix) && (after === undefined || compareKeys(k, after) > 0))
      .sort(compareKeys);
    const out: Item[] = [];
    for (const key of keys) {
      if (opts?.limit !== undefined && out.length >= opts.limit) break;
      const row = this.#live(key, now);
      if (row) out.push(makeItem(key, row.value, row.revision, row.expires));
    }
    return out;
  }

  watch(prefix: string, opts: WatchOptions = {}): AsyncIterable<WatchEvent> {
    // Subscribe now, not on first next(): the watch covers changes made after this call.
    const sub: Subscriber | undefined = this.#closed ? undefined : { prefix, queue: [] };
    if (sub) this.#subscribers.add(sub);
    return this.#events(sub, opts.signal);
  }

  async *#events(sub: Subscriber | undefined, signal: AbortSignal | undefined): AsyncGenerator<WatchEvent> {
    if (!sub) throw closedError(this.kind);
    try {
      for (;;) {
        if (signal?.aborted || this.#closed) return;
        const ev = sub.queue.shift();
        if (ev) {
          yield ev;
          continue;
        }
        await this.#waiters.wait(undefined, signal);
      }
    } finally {
      this.#subscribers.delete(sub);
    }
  }

  async sweepExpired(): Promise<number> {
    this.#open();
    return this.#sweep();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#waiters.wakeAll();
  }

  #sweep(): number {
    if (this.#closed) return 0;
    const now = this.#now();
    let n = 0;
    for (const [key, row] of [...this.#rows]) {
      if (row.expires !== null && row.expires <= now) {
        this.#remove(key);
        n++;
      }
    }
    return n;
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  #open(): void {
    if (this.#closed) throw closedError(this.kind);
  }

  #live(key: string, now: number): Row | undefined {
    const row = this.#rows.get(key);
    return row && (row.expires === null || row.expires > now) ? row : undefined;
  }

  /** Removes an expired row (telling watchers) so a write sees the key as missing. */
  #expireIfDue(key: string, now: number): Row | undefined {
    const row = this.#rows.get(key);
    if (row && row.expires !== null && row.expires <= now) {
      this.#remove(key);
      return undefined;
    }
    return row;
  }

  #write(key: string, value: string, expires: number | null): Item {
    const revision = ++this.#revision;
    this.#rows.set(key, { value, revision, expires });
    this.#publish(key, () => ({ type: 'put', item: makeItem(key, value, revision, expires) }));
    return makeItem(key, value, revision, expires);
  }

  #remove(key: string): void {
    this.#rows.delete(key);
    const revision = ++this.#revision;
    this.#publish(key, () => ({ type: 'delete', key, revision }));
  }

  #publish(key: string, make: () => WatchEvent): void {
    let any = false;
    for (const sub of this.#subscribers) {
      if (key.startsWith(sub.prefix)) {
        sub.queue.push(make());
        any = true;
      }
    }
    if (any) this.#waiters.wakeAll();
  }
}
