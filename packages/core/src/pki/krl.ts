import { sshString, u32, u64 } from './sshwire.js';

/**
 * OpenSSH key revocation lists (PROTOCOL.krl in OpenSSH): what sshd's
 * `RevokedKeys` reads on every authentication. Gatehouse revokes user
 * certificates by serial, one certificate section per user CA key.
 * Pure: bytes out, no I/O.
 */

const KRL_MAGIC = Buffer.from('SSHKRL\n\0', 'latin1');
const KRL_FORMAT_VERSION = 1;
const KRL_SECTION_CERTIFICATES = 1;
const KRL_SECTION_CERT_SERIAL_LIST = 0x20;
const MAX_DATE_MS = 8.64e15;

export interface KrlCertificateSection {
  /** The CA's public key in SSH wire form (the blob of its `ssh-ed25519 AAAA…` line). */
  caKey: Uint8Array;
  /** Serials of certificates from this CA that are revoked. */
  serials: readonly bigint[];
}

export interface Krl {
  /** Grows each time the list changes (readers may use it to skip an older copy). */
  version: bigint;
  generatedAt: Date;
  comment?: string;
  sections: readonly KrlCertificateSection[];
}

export function encodeKrl(krl: Krl): Buffer {
  const parts: Buffer[] = [
    KRL_MAGIC,
    u32(KRL_FORMAT_VERSION),
    u64(krl.version),
    u64(BigInt(Math.floor(krl.generatedAt.getTime() / 1000))),
    u64(0n), // flags: none are defined
    sshString(''), // reserved
    sshString(krl.comment ?? ''),
  ];
  for (const s of krl.sections) {
    if (s.serials.length === 0) continue;
    // Sorted and unique, so the same revocations always give the same bytes.
    const serials = [...new Set(s.serials)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const body = Buffer.concat([
      sshString(s.caKey),
      sshString(''), // reserved
      Buffer.from([KRL_SECTION_CERT_SERIAL_LIST]),
      sshString(Buffer.concat(serials.map((n) => u64(n)))),
    ]);
    parts.push(Buffer.from([KRL_SECTION_CERTIFICATES]), sshString(body));
  }
  return Buffer.concat(parts);
}

/** What a reader of Gatehouse's KRLs needs: the revoked serials, and when the list was made. */
export interface DecodedKrl {
  version: bigint;
  generatedAt: Date;
  /** Revoked certificate serials, from every certificate section (per CA key, hex of the key blob). */
  serials: Map<string, Set<bigint>>;
}

/**
 * Reads a KRL: serial lists of certificate sections, which is what Gatehouse
 * writes. Anything it cannot vouch for (other revocation kinds, a critical
 * extension, a malformed structure) throws a KrlError, so a node never
 * takes a list it only half understood for a complete one.
 */
export function decodeKrl(buf: Uint8Array): DecodedKrl {
  const r = new KrlReader(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  if (!r.take(KRL_MAGIC.length).equals(KRL_MAGIC)) throw new KrlError('not an OpenSSH KRL (bad magic)');
  const format = r.u32();
  if (format !== KRL_FORMAT_VERSION) throw new KrlError(`unsupported KRL format version ${format}`);
  const version = r.u64();
  // Seconds past what a Date holds (year 275760) read as the latest Date, never an Invalid Date.
  const generatedAt = new Date(Math.min(Number(r.u64()) * 1000, MAX_DATE_MS));
  r.u64(); // flags
  r.string(); // reserved
  r.string(); // comment
  const serials = new Map<string, Set<bigint>>();
  while (!r.done()) {
    const type = r.byte();
    const section = new KrlReader(r.string());
    if (type !== KRL_SECTION_CERTIFICATES) throw new KrlError(`unsupported KRL section type ${type}`);
    const ca = section.string().toString('hex');
    section.string(); // reserved
    const set = serials.get(ca) ?? new Set<bigint>();
    serials.set(ca, set);
    while (!section.done()) {
      const sub = section.byte();
      const data = new KrlReader(section.string());
      if (sub !== KRL_SECTION_CERT_SERIAL_LIST)
        throw new KrlError(`unsupported KRL certificate section ${sub}`);
      while (!data.done()) set.add(data.u64());
    }
  }
  return { version, generatedAt, serials };
}

export class KrlError extends Error {
  override name = 'KrlError';
}

/** Bounds-checked reader over KRL bytes. */
class KrlReader {
  readonly #b: Buffer;
  #off = 0;
  constructor(b: Buffer) {
    this.#b = b;
  }
  done(): boolean {
    return this.#off >= this.#b.length;
  }
  take(n: number): Buffer {
    if (n < 0 || this.#off + n > this.#b.length) throw new KrlError('truncated KRL');
    const out = this.#b.subarray(this.#off, this.#off + n);
    this.#off += n;
    return out;
  }
  byte(): number {
    return this.take(1)[0]!;
  }
  u32(): number {
    return this.take(4).readUInt32BE(0);
  }
  u64(): bigint {
    return this.take(8).readBigUInt64BE(0);
  }
  string(): Buffer {
    return this.take(this.u32());
  }
}
