/**
 * The storage contract every backend implements (SQLite embedded default,
 * memory for tests, PostgreSQL/etcd later). Keys are '/'-separated strings,
 * values are strings (JSON by convention). `revision` is a per-backend
 * monotonically increasing number assigned on every write; compare-and-swap
 * is by revision. `src/testing/backend-contract.ts` is the executable form of
 * this contract.
 */
export interface Item {
  key: string;
  value: string;
  revision: number;
  /** Absolute expiry; an expired item is invisible to get/range. */
  expires?: Date | undefined;
}

export interface PutOptions {
  /** Time to live in milliseconds from now (by the backend's clock). */
  ttlMs?: number;
}

export interface RangeOptions {
  /** Return at most this many items (in key order). */
  limit?: number;
  /** Only keys strictly greater than this one (for paging). */
  startAfter?: string;
}

export type WatchEvent = { type: 'put'; item: Item } | { type: 'delete'; key: string; revision: number };

export interface WatchOptions {
  signal?: AbortSignal;
}

export interface Backend {
  readonly kind: string;
  get(key: string): Promise<Item | undefined>;
  /** Unconditional write. */
  put(key: string, value: string, opts?: PutOptions): Promise<Item>;
  /** Write only if the key does not exist yet; throws GH_ERR_ALREADY_EXISTS. */
  create(key: string, value: string, opts?: PutOptions): Promise<Item>;
  /**
   * Write only if the key's current revision equals `expectedRevision`
   * (null: the key must not exist). Throws GH_ERR_CONFLICT otherwise.
   */
  compareAndSwap(
    key: string,
    expectedRevision: number | null,
    value: string,
    opts?: PutOptions,
  ): Promise<Item>;
  /** True when something was deleted. */
  delete(key: string): Promise<boolean>;
  /** Items whose key starts with `prefix`, in key order. */
  range(prefix: string, opts?: RangeOptions): Promise<Item[]>;
  /**
   * Changes under `prefix` made after the call, by this process or any other
   * process sharing the same store, in revision order. Expiry shows as delete.
   */
  watch(prefix: string, opts?: WatchOptions): AsyncIterable<WatchEvent>;
  /**
   * Delete every item whose expiry has passed (by the backend's clock) now,
   * reporting each as a delete to watchers; resolves to how many were
   * removed. Backends that sweep on their own (a timer, or native leases as
   * in etcd) still run in the background; this lets tests and admin tools
   * trigger a sweep deterministically. Optional because a backend may have
   * no way to force its store's expiry.
   */
  sweepExpired?(): Promise<number>;
  close(): Promise<void>;
}
