import { sshString, u32, u64 } from './sshcert.js';

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
