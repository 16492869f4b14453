import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';

/** The key pairs `gatehouse login` asks Gatehouse to certify. */
export interface LoginKeys {
  /** OpenSSH private key file content ("-----BEGIN OPENSSH PRIVATE KEY-----"). */
  sshPrivateKey: string;
  /** `ssh-ed25519 AAAA... comment` */
  sshPublicKey: string;
  /** PKCS#8 PEM of the ECDSA P-256 TLS key. */
  tlsPrivateKey: string;
  /** SPKI PEM of the TLS public key (LoginRequest.tls_public_key). */
  tlsPublicKey: string;
}

export function generateLoginKeys(comment: string): LoginKeys {
  const ssh = generateEd25519OpenSsh(comment);
  const tls = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    sshPrivateKey: ssh.privateKey,
    sshPublicKey: ssh.publicKey,
    tlsPrivateKey: tls.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    tlsPublicKey: tls.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * OpenSSH 9 does not read PKCS#8 Ed25519 keys (`ssh-keygen -y` says "invalid
 * format"), so the private key is written in OpenSSH's own unencrypted
 * "openssh-key-v1" container (PROTOCOL.key in the OpenSSH sources).
 */
export function generateEd25519OpenSsh(comment: string): { privateKey: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const pub = Buffer.from(jwk.x!, 'base64url');
  const seed = Buffer.from(jwk.d!, 'base64url');
  if (pub.length !== 32 || seed.length !== 32) throw new Error('unexpected Ed25519 key size');
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  const check = randomBytes(4).readUInt32BE();
  let priv = Buffer.concat([
    uint32(check),
    uint32(check),
    sshString('ssh-ed25519'),
    sshString(pub),
    sshString(Buffer.concat([seed, pub])),
    sshString(comment),
  ]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([
    Buffer.from('openssh-key-v1\0', 'latin1'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(pubBlob),
    sshString(priv),
  ]);
  const b64 = body
    .toString('base64')
    .match(/.{1,70}/g)!
    .join('\n');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')}${comment ? ` ${comment}` : ''}`,
  };
}

/** Reads SSH wire fields (uint32, length-prefixed strings) from `buf`; `bad` makes the error for a short buffer. */
function wireReader(buf: Buffer, bad: (why: string) => Error) {
  let off = 0;
  const u32 = () => {
    if (off + 4 > buf.length) throw bad('truncated');
    const v = buf.readUInt32BE(off);
    off += 4;
    return v;
  };
  return {
    u32,
    skip(n: number) {
      off += n;
    },
    str(): Buffer {
      const n = u32();
      if (off + n > buf.length) throw bad('truncated');
      const s = buf.subarray(off, off + n);
      off += n;
      return s;
    },
  };
}

/**
 * The Ed25519 private key of an unencrypted "openssh-key-v1" file as written
 * by generateEd25519OpenSsh (or `ssh-keygen -t ed25519 -N ''`).
 */
export function readEd25519OpenSsh(text: string): KeyObject {
  const bad = (why: string) => new Error(`not an unencrypted OpenSSH Ed25519 private key: ${why}`);
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m) throw bad('no OPENSSH PRIVATE KEY block');
  const buf = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (buf.subarray(0, magic.length).toString('latin1') !== magic) throw bad('wrong magic');
  const r = wireReader(buf, bad);
  r.skip(magic.length);
  if (r.str().toString() !== 'none') throw bad('encrypted');
  r.str(); // kdf name
  r.str(); // kdf options
  if (r.u32() !== 1) throw bad('more than one key');
  r.str(); // public key blob
  const p = wireReader(r.str(), bad);
  const check = p.u32();
  if (p.u32() !== check) throw bad('check bytes differ (wrong passphrase or damaged file)');
  if (p.str().toString() !== 'ssh-ed25519') throw bad('not an Ed25519 key');
  p.str(); // public key
  const both = p.str();
  if (both.length !== 64) throw bad('wrong key length');
  // PKCS#8 for Ed25519 is a fixed 16-byte prefix and the 32-byte seed (RFC 8410).
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), both.subarray(0, 32)]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}
