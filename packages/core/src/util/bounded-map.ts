/**
 * A map bounded in entries and in the total size of its values, for what a
 * session remembers on a client's behalf (prepared statements and their
 * text): past either bound the oldest entry goes, so the gateway's memory
 * cannot grow with what one client sends. Callers treat a forgotten entry as
 * unknown.
 */
export class BoundedMap<K, V> {
  readonly #map = new Map<K, { value: V; size: number }>();
  readonly #maxEntries: number;
  readonly #maxSize: number;
  readonly #sizeOf: (value: V, key: K) => number;
  #size = 0;

  constructor(opts: { maxEntries: number; maxSize: number; sizeOf: (value: V, key: K) => number }) {
    this.#maxEntries = opts.maxEntries;
    this.#maxSize = opts.maxSize;
    this.#sizeOf = opts.sizeOf;
  }

  get size(): number {
    return this.#map.size;
  }

  get(key: K): V | undefined {
    return this.#map.get(key)?.value;
  }

  set(key: K, value: V): void {
    this.delete(key);
    const size = this.#sizeOf(value, key);
    while (this.#map.size > 0 && (this.#map.size >= this.#maxEntries || this.#size + size > this.#maxSize)) {
      this.delete(this.#map.keys().next().value as K);
    }
    this.#map.set(key, { value, size });
    this.#size += size;
  }

  delete(key: K): void {
    const e = this.#map.get(key);
    if (!e) return;
    this.#map.delete(key);
    this.#size -= e.size;
  }

  clear(): void {
    this.#map.clear();
    this.#size = 0;
  }
}
