/**
 * MD4 (RFC 1320), needed only for the NT hash of NTLM (MS-NLMP 3.3.1,
 * NTOWF). node:crypto on OpenSSL 3 refuses `md4` without the legacy
 * provider, so it is written out here. Not for any other use: MD4 is broken.
 */

const rotl = (x: number, n: number) => (x << n) | (x >>> (32 - n));

export function md4(input: Uint8Array): Buffer {
  const bitLen = input.length * 8;
  const padLen = (input.length % 64 < 56 ? 56 : 120) - (input.length % 64);
  const msg = Buffer.alloc(input.length + padLen + 8);
  msg.set(input, 0);
  msg[input.length] = 0x80;
  msg.writeUInt32LE(bitLen >>> 0, msg.length - 8);
  msg.writeUInt32LE(Math.floor(bitLen / 0x100000000), msg.length - 4);

  let a = 0x67452301;
  let b = 0xefcdab89;
  let c = 0x98badcfe;
  let d = 0x10325476;
  const x = new Array<number>(16);
  const f = (p: number, q: number, r: number) => (p & q) | (~p & r);
  const g = (p: number, q: number, r: number) => (p & q) | (p & r) | (q & r);
  const h = (p: number, q: number, r: number) => p ^ q ^ r;
  for (let off = 0; off < msg.length; off += 64) {
    for (let i = 0; i < 16; i++) x[i] = msg.readInt32LE(off + i * 4);
    const [aa, bb, cc, dd] = [a, b, c, d];
    // Round 1: [abcd k s] = a = (a + F(b,c,d) + X[k]) <<< s
    for (const k of [0, 4, 8, 12]) {
      a = rotl((a + f(b, c, d) + x[k]!) | 0, 3);
      d = rotl((d + f(a, b, c) + x[k + 1]!) | 0, 7);
      c = rotl((c + f(d, a, b) + x[k + 2]!) | 0, 11);
      b = rotl((b + f(c, d, a) + x[k + 3]!) | 0, 19);
    }
    // Round 2: + 0x5A827999, word order by columns.
    for (const k of [0, 1, 2, 3]) {
      a = rotl((a + g(b, c, d) + x[k]! + 0x5a827999) | 0, 3);
      d = rotl((d + g(a, b, c) + x[k + 4]! + 0x5a827999) | 0, 5);
      c = rotl((c + g(d, a, b) + x[k + 8]! + 0x5a827999) | 0, 9);
      b = rotl((b + g(c, d, a) + x[k + 12]! + 0x5a827999) | 0, 13);
    }
    // Round 3: + 0x6ED9EBA1, bit-reversed word order.
    for (const k of [0, 2, 1, 3]) {
      a = rotl((a + h(b, c, d) + x[k]! + 0x6ed9eba1) | 0, 3);
      d = rotl((d + h(a, b, c) + x[k + 8]! + 0x6ed9eba1) | 0, 9);
      c = rotl((c + h(d, a, b) + x[k + 4]! + 0x6ed9eba1) | 0, 11);
      b = rotl((b + h(c, d, a) + x[k + 12]! + 0x6ed9eba1) | 0, 15);
    }
    a = (a + aa) | 0;
    b = (b + bb) | 0;
    c = (c + cc) | 0;
    d = (d + dd) | 0;
  }
  const out = Buffer.alloc(16);
  out.writeInt32LE(a, 0);
  out.writeInt32LE(b, 4);
  out.writeInt32LE(c, 8);
  out.writeInt32LE(d, 12);
  return out;
}
