import { randomFillSync } from 'node:crypto';

/**
 * Returns a generator of UUIDv7 ids (RFC 9562): 48-bit Unix milliseconds,
 * then a 12-bit counter, then random bits. Ids from one generator sort in
 * creation order, even within one millisecond or when the clock steps back,
 * which keeps the index's (time, id) b-tree appending at its right edge.
 */
export function createIdGenerator(nowMs: () => number = () => Date.now()): () => string {
  let lastMs = -1;
  let counter = 0;
  // Random bits come from a pool refilled 4 KiB at a time: one getrandom per 200+ ids, not two per id.
  const pool = Buffer.alloc(4096);
  let used = pool.length;
  const take = (n: number): Buffer => {
    if (used + n > pool.length) {
      randomFillSync(pool);
      used = 0;
    }
    const out = pool.subarray(used, used + n);
    used += n;
    return out;
  };
  return () => {
    let ms = Math.floor(nowMs());
    if (ms <= lastMs) {
      ms = lastMs;
      counter++;
      if (counter > 0xfff) {
        // Counter exhausted: borrow the next millisecond rather than lose order.
        ms = lastMs + 1;
        counter = take(2).readUInt16BE(0) & 0x7ff;
      }
    } else {
      // Seed in the lower half so a burst in one millisecond has room to count up.
      counter = take(2).readUInt16BE(0) & 0x7ff;
    }
    lastMs = ms;
    const b = take(16);
    b.writeUIntBE(ms, 0, 6);
    b[6] = 0x70 | (counter >> 8);
    b[7] = counter & 0xff;
    b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  };
}
