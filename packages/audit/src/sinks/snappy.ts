/**
 * Snappy block compression (the raw format, not the framing format), which
 * Loki's protobuf push API requires. The format is small: a varint of the
 * uncompressed length, then literal runs and back-references (copies) into
 * the last 64 KiB. This is a greedy compressor with a hash table of 4-byte
 * sequences, compressing 64 KiB blocks independently as the reference does;
 * it trades some ratio for being a few dozen lines (decision 0026).
 */
const BLOCK = 1 << 16;
const HASH_BITS = 14;
const MIN_MATCH = 4;

function varint(n: number, out: number[]): void {
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
}

function hash(u32: number): number {
  return Math.imul(u32, 0x1e35a7bd) >>> (32 - HASH_BITS);
}

export function snappyCompress(input: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(32 + input.length + Math.ceil(input.length / 6));
  const head: number[] = [];
  varint(input.length, head);
  let o = 0;
  for (const b of head) out[o++] = b;
  const table = new Int32Array(1 << HASH_BITS);
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const emitLiteral = (from: number, to: number) => {
    let len = to - from;
    while (len > 0) {
      // One literal op covers up to 2^32 bytes; chunk at 64 KiB to keep the tags simple.
      const n = Math.min(len, BLOCK);
      const l = n - 1;
      if (l < 60) out[o++] = l << 2;
      else if (l < 0x100) {
        out[o++] = 60 << 2;
        out[o++] = l;
      } else {
        out[o++] = 61 << 2;
        out[o++] = l & 0xff;
        out[o++] = l >>> 8;
      }
      out.set(input.subarray(from, from + n), o);
      o += n;
      from += n;
      len -= n;
    }
  };
  const emitCopy = (offset: number, len: number) => {
    // Copy with a 2-byte offset: tag 0b10, length 1..64.
    while (len > 0) {
      const n = Math.min(len, 64);
      out[o++] = ((n - 1) << 2) | 0b10;
      out[o++] = offset & 0xff;
      out[o++] = offset >>> 8;
      len -= n;
    }
  };
  for (let start = 0; start < input.length; start += BLOCK) {
    const end = Math.min(start + BLOCK, input.length);
    table.fill(-1);
    let lit = start;
    let i = start;
    while (i + MIN_MATCH <= end) {
      const cur = view.getUint32(i, true);
      const h = hash(cur);
      const cand = table[h]!;
      table[h] = i;
      if (cand >= start && view.getUint32(cand, true) === cur) {
        let len = MIN_MATCH;
        while (i + len < end && input[cand + len] === input[i + len]) len++;
        if (lit < i) emitLiteral(lit, i);
        emitCopy(i - cand, len);
        i += len;
        lit = i;
      } else i++;
    }
    if (lit < end) emitLiteral(lit, end);
  }
  return out.subarray(0, o);
}
