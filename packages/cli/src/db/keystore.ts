import { createHash, createHmac, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { ContentInfo, id_data } from '@peculiar/asn1-cms';
import {
  AuthenticatedSafe,
  CertBag,
  id_certBag,
  id_pkcs8ShroudedKeyBag,
  id_x509Certificate,
  MacData,
  PFX,
  PKCS12Attribute,
  SafeBag,
  SafeContents,
} from '@peculiar/asn1-pfx';
import { id_pkcs9_at_localKeyId } from '@peculiar/asn1-pkcs9';
import { DigestInfo, sha256 } from '@peculiar/asn1-rsa';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';

/**
 * The key as unencrypted PKCS#8 DER (`.pk8`): what pgjdbc's `sslkey` reads
 * (it takes PEM for the certificate but DER for the key, and fails on a PEM
 * key with "extra data at the end").
 */
export function pkcs8Der(keyPem: string): Buffer {
  return createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
}

/**
 * The password of the PKCS#12 keystore db login writes: empty, on purpose.
 * The keystore sits beside the same key in PEM, unencrypted, in a 0700
 * directory of 0600 files: a password would protect nothing those modes do
 * not, and printing one in every JDBC URL would teach people to paste
 * secrets. Java still needs the format's password-based encryption, which
 * works with an empty password (docs/decisions/0024).
 */
export const KEYSTORE_PASSWORD = '';

/** MAC iterations and salt as OpenSSL 3 writes them (`openssl pkcs12 -export` defaults). */
const MAC_ITERATIONS = 2048;
const SHA256_BYTES = 32;
const SHA256_BLOCK = 64;

/**
 * RFC 7292 appendix B.2 with SHA-256 and ID 3 (integrity key), for an
 * output no longer than one hash (the HMAC-SHA-256 key): then the key is
 * just H^iterations(D || S || P), and the appendix's I-block update (only
 * needed for a second output block) never runs. node:crypto has no PKCS#12
 * KDF; the PBES2 key encryption (PBKDF2 + AES) does not need one.
 */
function pkcs12MacKey(password: string, salt: Buffer, iterations: number): Buffer {
  const repeatTo = (b: Buffer, len: number) => {
    const out = Buffer.alloc(len);
    for (let i = 0; i < len; i++) out[i] = b[i % b.length]!;
    return out;
  };
  const blocks = (n: number) => SHA256_BLOCK * Math.ceil(n / SHA256_BLOCK);
  // BMPString (UTF-16 big-endian) with a two-byte NUL terminator; "" is just the terminator.
  const bmp = Buffer.from(`${password}\0`, 'utf16le').swap16();
  const d = Buffer.alloc(SHA256_BLOCK, 3);
  const i = Buffer.concat([repeatTo(salt, blocks(salt.length)), repeatTo(bmp, blocks(bmp.length))]);
  let a = createHash('sha256').update(d).update(i).digest();
  for (let n = 1; n < iterations; n++) a = createHash('sha256').update(a).digest();
  return a.subarray(0, SHA256_BYTES);
}

const der = (value: object): ArrayBuffer => AsnConvert.serialize(value);
const octets = (b: ArrayBuffer | Buffer): ArrayBuffer => der(new OctetString(b));

/**
 * A PKCS#12 keystore (`.p12`) holding the certificate and its key, for Java
 * clients (MariaDB Connector/J `keyStore`, `keytool`). The key is in a
 * PKCS#8 shrouded bag encrypted by node:crypto (PBES2: PBKDF2-HMAC-SHA256 +
 * AES-256-CBC), the certificate in a plain bag, both tagged with the same
 * localKeyId so readers pair them; integrity is HMAC-SHA-256, as `openssl
 * pkcs12 -export` writes by default. The ASN.1 comes from @peculiar/asn1-pfx.
 */
export function pkcs12(certPem: string, keyPem: string, password: string): Buffer {
  const cert = new X509Certificate(certPem);
  const keyId = [octets(createHash('sha1').update(cert.raw).digest())];
  // PKCS12Attribute's constructor drops its parameters (asn1-pfx 2.11: Object.assign(params)), so set the fields.
  const localKeyId = Object.assign(new PKCS12Attribute(), {
    attrId: id_pkcs9_at_localKeyId,
    attrValues: keyId,
  });
  const attrs = [localKeyId];
  const shrouded = createPrivateKey(keyPem).export({
    type: 'pkcs8',
    format: 'der',
    cipher: 'aes-256-cbc',
    passphrase: password,
  });
  const certBag = new CertBag({ certId: id_x509Certificate, certValue: octets(cert.raw) });
  const contents = new SafeContents([
    new SafeBag({ bagId: id_certBag, bagValue: der(certBag), bagAttributes: attrs }),
    new SafeBag({
      bagId: id_pkcs8ShroudedKeyBag,
      bagValue: new Uint8Array(shrouded).buffer,
      bagAttributes: attrs,
    }),
  ]);
  const safe = new AuthenticatedSafe([
    new ContentInfo({ contentType: id_data, content: octets(der(contents)) }),
  ]);
  const safeDer = Buffer.from(der(safe));
  const salt = randomBytes(8);
  const mac = createHmac('sha256', pkcs12MacKey(password, salt, MAC_ITERATIONS))
    .update(safeDer)
    .digest();
  const pfx = new PFX({
    version: 3,
    authSafe: new ContentInfo({ contentType: id_data, content: octets(safeDer) }),
    macData: new MacData({
      mac: new DigestInfo({ digestAlgorithm: sha256, digest: new OctetString(mac) }),
      macSalt: new OctetString(salt),
      iterations: MAC_ITERATIONS,
    }),
  });
  return Buffer.from(der(pfx));
}
