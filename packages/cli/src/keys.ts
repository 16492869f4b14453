import { generateKeyPairSync, randomBytes } from 'node:crypto';

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
