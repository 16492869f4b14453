import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import {
  GatehouseError,
  type Identity,
  type SshCertificate,
  sshCertificateIdentity,
  sshEd25519PublicKeyToKeyObject,
  verifySshCertificate,
} from '@gatehouse/core';
import { CERT_SUFFIX } from './ssh2.js';
import { SshReader } from './wire/reader.js';

/** What a client offered in a publickey request (ssh2's PublicKeyAuthContext, narrowed). */
export interface OfferedKey {
  /** Algorithm name, e.g. "ssh-ed25519-cert-v01@openssh.com". */
  algo: string;
  /** The key or certificate blob. */
  data: Buffer;
  /** The full SSH signature blob (cert algorithms) or the bare signature; absent on a "may I?" query. */
  signature?: Buffer | undefined;
  /** The signed data (session id + request). */
  blob?: Buffer | undefined;
}

export class NotACertificateError extends GatehouseError {
  constructor(algo: string) {
    super('GH_ERR_UNAUTHENTICATED', `the key offered (${algo}) is not a Gatehouse certificate`, {
      hint: 'run gatehouse login, then connect with its certificate (gatehouse config ssh prints the settings)',
    });
  }
}

/**
 * Checks a publickey offer the way sshd checks a user certificate: a
 * certificate signed by a trusted user CA, valid now, a user certificate,
 * only understood critical options (source-address against the client's
 * address), and, when the client signed, a signature by the certified key
 * over the session data. Returns the certificate and the identity it
 * carries. Throws GatehouseError otherwise.
 */
export function verifyOfferedCertificate(
  offer: OfferedKey,
  trustedUserCaKeys: readonly string[],
  now: Date,
  clientAddress: string | undefined,
): { cert: SshCertificate; identity: Identity } {
  if (!offer.algo.endsWith(CERT_SUFFIX)) throw new NotACertificateError(offer.algo);
  const cert = verifySshCertificate(offer.data, trustedUserCaKeys, now, {
    type: 'user',
    ...(clientAddress !== undefined ? { clientAddress } : {}),
  });
  if (cert.certType !== offer.algo) {
    throw new GatehouseError(
      'GH_ERR_CERT_INVALID',
      `certificate type ${cert.certType} does not match the offered ${offer.algo}`,
    );
  }
  if (offer.signature !== undefined) {
    if (offer.blob === undefined)
      throw new GatehouseError('GH_ERR_CERT_INVALID', 'signature without signed data');
    if (!verifySessionSignature(cert, offer.signature, offer.blob)) {
      throw new GatehouseError(
        'GH_ERR_CERT_INVALID',
        'the client signature does not match the certified key',
        {
          hint: 'the private key does not belong to this certificate: run gatehouse login again',
        },
      );
    }
  }
  return { cert, identity: sshCertificateIdentity(cert) };
}

/** Unwraps `string algo, string sig` when ssh2 handed over the whole blob (it does for cert algorithms). */
function unwrapSignature(sig: Buffer, keyType: string): { algo: string; sig: Buffer } {
  try {
    const r = new SshReader(sig);
    const algo = r.string().toString('latin1');
    const raw = r.string();
    if (r.done) return { algo, sig: raw };
  } catch {
    // not a wrapped blob: a bare signature for the key type
  }
  return { algo: keyType, sig };
}

function certifiedKey(cert: SshCertificate): { key: KeyObject; ecdsa: boolean } {
  if (cert.keyType === 'ssh-ed25519')
    return { key: sshEd25519PublicKeyToKeyObject(cert.publicKey), ecdsa: false };
  if (cert.keyType === 'ecdsa-sha2-nistp256') {
    const r = new SshReader(cert.publicKey);
    r.string();
    if (r.string().toString('latin1') !== 'nistp256')
      throw new GatehouseError('GH_ERR_CERT_INVALID', 'bad ECDSA curve');
    const q = r.string();
    if (q.length !== 65 || q[0] !== 4) throw new GatehouseError('GH_ERR_CERT_INVALID', 'bad ECDSA point');
    const key = createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: q.subarray(1, 33).toString('base64url'),
        y: q.subarray(33).toString('base64url'),
      },
      format: 'jwk',
    });
    return { key, ecdsa: true };
  }
  throw new GatehouseError('GH_ERR_CERT_INVALID', `certificates on ${cert.keyType} keys are not supported`, {
    hint: 'use an Ed25519 or ECDSA P-256 key (gatehouse login creates an Ed25519 key)',
  });
}

function mpintTo32(b: Buffer): Buffer {
  let v = b;
  while (v.length > 32 && v[0] === 0) v = v.subarray(1);
  if (v.length > 32) throw new GatehouseError('GH_ERR_CERT_INVALID', 'ECDSA signature component too long');
  return Buffer.concat([Buffer.alloc(32 - v.length), v]);
}

export function verifySessionSignature(cert: SshCertificate, signature: Buffer, signed: Buffer): boolean {
  const { key, ecdsa } = certifiedKey(cert);
  const { algo, sig } = unwrapSignature(signature, cert.keyType);
  if (algo !== cert.keyType) return false;
  if (!ecdsa) return verify(null, signed, key, sig);
  const r = new SshReader(sig);
  const p1363 = Buffer.concat([mpintTo32(r.string()), mpintTo32(r.string())]);
  if (!r.done) return false;
  return verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, p1363);
}
