/**
 * RC4, the stream cipher of NTLM key exchange and sealing (MS-NLMP 3.4.3).
 * node:crypto on OpenSSL 3 refuses `rc4` without the legacy provider. A
 * handle keeps its state across calls: NTLM's connection-oriented sealing
 * runs one keystream per direction for the whole session.
 */
export class Rc4 {
  readonly #s = new Uint8Array(256);
  #i = 0;
  #j = 0;

  constructor(key: Uint8Array) {
    if (key.length === 0 || key.length > 256) throw new RangeError('RC4 key must be 1..256 bytes');
    const s = this.#s;
    for (let i = 0; i < 256; i++) s[i] = i;
    let j = 0;
    for (let i = 0; i < 256; i++) {
      j = (j + s[i]! + key[i % key.length]!) & 0xff;
      [s[i], s[j]] = [s[j]!, s[i]!];
    }
  }

  /** XORs `data` with the next bytes of the keystream (encrypts and decrypts alike). */
  update(data: Uint8Array): Buffer {
    const s = this.#s;
    const out = Buffer.alloc(data.length);
    let i = this.#i;
    let j = this.#j;
    for (let n = 0; n < data.length; n++) {
      i = (i + 1) & 0xff;
      j = (j + s[i]!) & 0xff;
      const t = s[i]!;
      s[i] = s[j]!;
      s[j] = t;
      out[n] = data[n]! ^ s[(s[i]! + s[j]!) & 0xff]!;
    }
    this.#i = i;
    this.#j = j;
    return out;
  }
}

/** One-shot RC4 with a fresh key (RC4K in MS-NLMP). */
export function rc4(key: Uint8Array, data: Uint8Array): Buffer {
  return new Rc4(key).update(data);
}
