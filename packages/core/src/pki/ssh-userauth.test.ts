import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backend/memory.js';
import { systemClock } from '../clock.js';
import { AesGcmSealer } from '../crypto/seal.js';
import { CertificateAuthorities } from './authority.js';
import { NotACertificateError, verifyUserAuthIdentity } from './ssh-userauth.js';
import { ed25519PublicKeyToSsh } from './sshcert.js';

/** The proxy's call: a publickey offer for `login` (root) from `addr`. */
function verifyOfferedCertificate(
  o: { algo: string; data: Buffer; blob?: Buffer; signature?: Buffer },
  keys: string[],
  now: Date,
  addr: string,
  login = 'root',
) {
  return verifyUserAuthIdentity(
    {
      login,
      algo: o.algo,
      keyBlob: o.data,
      clientAddress: addr,
      signature: o.signature && o.blob ? { data: o.blob, blob: o.signature } : undefined,
    },
    keys,
    now,
  );
}

let cas: CertificateAuthorities;
let other: CertificateAuthorities;

async function newCas(name: string) {
  const c = new CertificateAuthorities({
    backend: new MemoryBackend({ sweepIntervalMs: 0 }),
    sealer: new AesGcmSealer(randomBytes(32)),
    clock: systemClock,
    clusterName: name,
    audit: new MemoryAuditLog(),
  });
  await c.init();
  return c;
}

const sshString = (b: Buffer | string) => {
  const v = Buffer.from(b);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(v.length);
  return Buffer.concat([n, v]);
};

async function offer(ca: CertificateAuthorities, opts: { sourceAddress?: string } = {}) {
  const kp = generateKeyPairSync('ed25519');
  const issued = await ca.issueSshUserCert({
    publicKey: ed25519PublicKeyToSsh(kp.publicKey),
    keyId: 'alice',
    principals: ['root'],
    validAfter: new Date(),
    validBefore: new Date(Date.now() + 3600e3),
    identity: { user: 'alice', roles: ['dev'], traits: {}, expires: new Date(Date.now() + 3600e3) },
    ...(opts.sourceAddress ? { sourceAddress: opts.sourceAddress } : {}),
  });
  const data = Buffer.from(issued.cert.split(' ')[1]!, 'base64');
  const blob = randomBytes(64);
  const signature = Buffer.concat([sshString('ssh-ed25519'), sshString(sign(null, blob, kp.privateKey))]);
  return { algo: 'ssh-ed25519-cert-v01@openssh.com', data, blob, signature };
}

beforeAll(async () => {
  cas = await newCas('acme');
  other = await newCas('elsewhere');
});

describe('verifyUserAuth (the proxy and the node service share it)', () => {
  const keys = () => cas.get('user').map((k) => k.sshPublicKey);

  it('accepts a certificate from the user CA signed by its key and returns the identity', async () => {
    const o = await offer(cas);
    const r = verifyOfferedCertificate(o, keys(), new Date(), '127.0.0.1');
    expect(r.identity).toMatchObject({ user: 'alice', roles: ['dev'] });
    expect(r.cert.principals).toEqual(['root']);
    // A "may I use this key?" query carries no signature and passes the same checks.
    expect(() =>
      verifyOfferedCertificate({ algo: o.algo, data: o.data }, keys(), new Date(), '127.0.0.1'),
    ).not.toThrow();
  });

  it('refuses a signature by another key, a foreign CA, an expired cert, a wrong source address, a plain key', async () => {
    const o = await offer(cas);
    const forged = { ...o, blob: randomBytes(64) };
    expect(() => verifyOfferedCertificate(forged, keys(), new Date(), '127.0.0.1')).toThrow(
      /does not match the certified key/,
    );
    const foreign = await offer(other);
    expect(() => verifyOfferedCertificate(foreign, keys(), new Date(), '127.0.0.1')).toThrow(
      /not signed by a trusted/,
    );
    expect(() => verifyOfferedCertificate(o, keys(), new Date(Date.now() + 7200e3), '127.0.0.1')).toThrow(
      /expired/,
    );
    const pinned = await offer(cas, { sourceAddress: '10.0.0.0/8' });
    expect(() => verifyOfferedCertificate(pinned, keys(), new Date(), '127.0.0.1')).toThrow(
      /not valid from this address/,
    );
    expect(() =>
      verifyOfferedCertificate({ ...o, algo: 'ssh-ed25519' }, keys(), new Date(), '127.0.0.1'),
    ).toThrow(NotACertificateError);
    expect(() =>
      verifyOfferedCertificate(
        { ...o, algo: 'ecdsa-sha2-nistp256-cert-v01@openssh.com' },
        keys(),
        new Date(),
        '127.0.0.1',
      ),
    ).toThrow(/does not match/);
  });

  it('refuses a login the certificate does not name, before any authorization', async () => {
    const o = await offer(cas);
    expect(() => verifyOfferedCertificate(o, keys(), new Date(), '127.0.0.1', 'postgres')).toThrow(
      /not valid for "postgres"/,
    );
  });
});
