import 'reflect-metadata';
import { createHash, createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import * as px from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import type { Identity } from '../identity/types.js';
import {
  bitString,
  decodeOid,
  decodeTime,
  derToPem,
  explicit,
  octetString,
  oid,
  readOnly,
  seq,
  set,
  time,
  tlv,
  uintBytes,
  uintSmall,
  utf8String,
} from './der.js';
import { decodeIdentityJson, encodeIdentityJson } from './identity-codec.js';
import {
  createX509Ca,
  decodeIdentity,
  encodeIdentityExtension,
  IDENTITY_EXTENSION_OID,
  leafSpki,
  parseX509,
  randomSerial,
  spkiPin,
  subjectCommonNames,
  X509Issuer,
} from './x509.js';

const NB = new Date('2026-01-01T00:00:00Z');
const NA = new Date('2026-01-01T08:00:00Z');

const identity: Identity = {
  user: 'alice',
  roles: ['dev', 'ops'],
  traits: { logins: ['alice', 'root'], db_users: ['reader'] },
  expires: NA,
  mfaVerifiedAt: new Date('2025-12-31T23:59:00Z'),
  route: { kind: 'db', name: 'orders', user: 'reader' },
  loginIp: '192.0.2.7',
};

const ecPem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
    type: 'spki',
    format: 'pem',
  }) as string;

async function newIssuer() {
  const ca = await createX509Ca({
    commonName: 'Gatehouse user CA',
    organization: 'acme',
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2035-01-01T00:00:00Z'),
  });
  return { ca, issuer: new X509Issuer(ca.certPem, ca.privateKeyPem) };
}

describe('der', () => {
  it('encodes OIDs, integers, lengths and times byte for byte', () => {
    expect(oid('1.2.840.10045.4.3.2').toString('hex')).toBe('06082a8648ce3d040302');
    expect(decodeOid(oid(IDENTITY_EXTENSION_OID).subarray(2))).toBe(IDENTITY_EXTENSION_OID);
    expect(uintBytes(Buffer.from([0x80])).toString('hex')).toBe('02020080');
    expect(uintBytes(Buffer.from([0, 0, 0x7f])).toString('hex')).toBe('02017f');
    expect(tlv(0x04, Buffer.alloc(200)).subarray(0, 3).toString('hex')).toBe('0481c8');
    expect(tlv(0x04, Buffer.alloc(300)).subarray(0, 4).toString('hex')).toBe('0482012c');
    expect(time(new Date('2049-12-31T23:59:59Z')).toString('latin1').slice(2)).toBe('491231235959Z');
    expect(time(new Date('2050-01-01T00:00:00Z'))[0]).toBe(0x18);
    for (const d of ['1999-05-06T07:08:09Z', '2049-12-31T23:59:59Z', '2050-01-01T00:00:00Z']) {
      const t = time(new Date(d));
      expect(decodeTime(t[0] as number, t.subarray(2)).toISOString()).toBe(new Date(d).toISOString());
    }
  });

  it('decodes GeneralizedTime years 0000-0099 as written (were read as 1900-1999)', () => {
    // fuzz counterexample: time(0099-12-31T23:59:59Z) decoded as 1999-12-31T23:59:59Z.
    for (const d of ['0099-12-31T23:59:59.000Z', '0000-02-29T00:00:00.000Z', '0001-01-01T00:00:00.000Z']) {
      const t = time(new Date(d));
      expect(t[0]).toBe(0x18);
      expect(decodeTime(0x18, t.subarray(2)).toISOString()).toBe(d);
    }
  });

  it('keeps every identity OID arc below 2^31 (Go crypto/x509 rejects larger arcs)', () => {
    for (const arc of IDENTITY_EXTENSION_OID.split('.')) expect(Number(arc)).toBeLessThan(2 ** 31);
  });

  it('rejects trailing bytes, overruns and non-minimal lengths', () => {
    expect(() => readOnly(Buffer.from('300000', 'hex'))).toThrow(/trailing/);
    expect(() => readOnly(Buffer.from('3005000000', 'hex'))).toThrow(/overruns/);
    expect(() => readOnly(Buffer.from('30810100', 'hex'))).toThrow(/non-minimal/);
  });
});

describe('identity JSON', () => {
  it('round-trips every field with a fixed key order', () => {
    const json = encodeIdentityJson(identity);
    expect(Object.keys(JSON.parse(json))).toEqual([
      'v',
      'user',
      'roles',
      'traits',
      'expires',
      'mfa_verified_at',
      'route',
      'login_ip',
    ]);
    expect(decodeIdentityJson(json)).toEqual(identity);
    const minimal = { user: 'bob', roles: [], traits: {}, expires: NA };
    expect(decodeIdentityJson(encodeIdentityJson(minimal))).toEqual(minimal);
  });

  it('is strict about version, fields and types', () => {
    const base = JSON.parse(encodeIdentityJson(identity));
    const bad = (o: unknown) => () => decodeIdentityJson(JSON.stringify(o));
    expect(bad({ ...base, v: 2 })).toThrow(/version 1/);
    expect(bad({ ...base, user: undefined })).toThrow(/user/);
    expect(bad({ ...base, extra: 1 })).toThrow(/extra/);
    expect(bad({ ...base, roles: 'dev' })).toThrow(/roles/);
    expect(bad({ ...base, expires: 'tomorrow' })).toThrow(/expires/);
    expect(bad({ ...base, route: { kind: 'kube' } })).toThrow(/cluster/);
    expect(() => decodeIdentityJson('{')).toThrow(/not valid JSON/);
    expect(() => encodeIdentityJson({ ...identity, expires: new Date(Number.NaN) })).toThrow(
      /not a valid date/,
    );
  });
});

describe('X509Issuer', () => {
  it('issues a user cert that node, peculiar and the CA agree on', async () => {
    const { ca, issuer } = await newIssuer();
    const out = issuer.issueUser({ publicKeyPem: ecPem(), identity, notBefore: NB, notAfter: NA });
    const cert = new X509Certificate(out.pem);
    const caCert = new X509Certificate(ca.certPem);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.subject).toBe('CN=alice\nO=dev\nO=ops');
    expect(cert.issuer).toBe('CN=Gatehouse user CA\nO=acme');
    expect(new Date(cert.validFrom).toISOString()).toBe(NB.toISOString());
    expect(new Date(cert.validTo).toISOString()).toBe(NA.toISOString());
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(cert.ca).toBe(false);
    expect(cert.serialNumber.toLowerCase()).toBe(out.serial);
    // A second, independent implementation parses and verifies it too.
    const p = new px.X509Certificate(out.pem);
    const pca = new px.X509Certificate(ca.certPem);
    expect(await p.verify({ publicKey: pca.publicKey, signatureOnly: true }, webcrypto as never)).toBe(true);
    const ext = p.getExtension(IDENTITY_EXTENSION_OID);
    expect(ext?.critical).toBe(false);
    expect(Buffer.from(ext?.value as ArrayBuffer).equals(encodeIdentityExtension(identity))).toBe(true);
    const aki = p.getExtension(px.AuthorityKeyIdentifierExtension);
    const ski = pca.getExtension(px.SubjectKeyIdentifierExtension);
    expect(aki?.keyId).toBe(ski?.keyId);
  });

  it('decodes the identity back, strictly', async () => {
    const { issuer } = await newIssuer();
    const out = issuer.issueUser({ publicKeyPem: ecPem(), identity, notBefore: NB, notAfter: NA });
    for (const input of [out.pem, out.der, new X509Certificate(out.pem)])
      expect(decodeIdentity(input)).toEqual(identity);
    // The certificate's notAfter caps the identity's expiry.
    const short = issuer.issueUser({
      publicKeyPem: ecPem(),
      identity,
      notBefore: NB,
      notAfter: new Date(NB.getTime() + 60_000),
    });
    expect(decodeIdentity(short.pem).expires.toISOString()).toBe(
      new Date(NB.getTime() + 60_000).toISOString(),
    );
    expect(() =>
      decodeIdentity(
        issuer.issueDbClient({ publicKeyPem: ecPem(), dbUser: 'alice', notBefore: NB, notAfter: NA }, 'acme')
          .pem,
      ),
    ).toThrow(/no Gatehouse identity/);
    expect(() => decodeIdentity('not a cert')).toThrow(/PEM/);
  });

  it('refuses a certificate with a damaged subject Name as GH_ERR_CERT_INVALID (a DerError escaped)', () => {
    // fuzz counterexample: a subject RDN whose contents are not DER threw DerError from
    // decodeIdentity and subjectCommonNames instead of the certificate error every caller maps.
    const name = seq(oid('2.5.4.3'), utf8String('ca'));
    const damagedSubject = seq(set(Buffer.from([0x30, 0x05, 0x06, 0x03, 0x55])));
    const tbs = seq(
      explicit(0, uintSmall(2)),
      uintBytes(Buffer.from([1])),
      seq(oid('1.2.840.10045.4.3.2')),
      seq(set(name)),
      seq(time(NB), time(NA)),
      damagedSubject,
      seq(seq(oid('1.2.840.10045.2.1')), bitString(Buffer.alloc(65, 4))),
      explicit(3, seq(seq(oid(IDENTITY_EXTENSION_OID), octetString(encodeIdentityExtension(identity))))),
    );
    const der = seq(tbs, seq(oid('1.2.840.10045.4.3.2')), bitString(Buffer.alloc(8)));
    for (const read of [() => decodeIdentity(der), () => subjectCommonNames(der)]) {
      expect(read).toThrow(expect.objectContaining({ code: 'GH_ERR_CERT_INVALID' }));
    }
  });

  it('rejects an identity whose user differs from the subject CN', async () => {
    const { ca } = await newIssuer();
    // Build a certificate whose extension names another user, with peculiar, signed by our CA key.
    const caKey = await webcrypto.subtle.importKey(
      'pkcs8',
      createPrivateKey(ca.privateKeyPem).export({ type: 'pkcs8', format: 'der' }),
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    );
    const leaf = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const forged = await px.X509CertificateGenerator.create(
      {
        serialNumber: '01',
        subject: 'CN=mallory',
        issuer: 'CN=Gatehouse user CA, O=acme',
        notBefore: NB,
        notAfter: NA,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
        publicKey: leaf.publicKey as never,
        signingKey: caKey as never,
        extensions: [
          new px.Extension(IDENTITY_EXTENSION_OID, false, new Uint8Array(encodeIdentityExtension(identity))),
        ],
      },
      webcrypto as never,
    );
    expect(() => decodeIdentity(forged.toString('pem'))).toThrow(/CN does not match/);
    const twice = await px.X509CertificateGenerator.create(
      {
        serialNumber: '02',
        subject: 'CN=alice',
        issuer: 'CN=x',
        notBefore: NB,
        notAfter: NA,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
        publicKey: leaf.publicKey as never,
        signingKey: caKey as never,
        extensions: [
          new px.Extension(IDENTITY_EXTENSION_OID, false, new Uint8Array(encodeIdentityExtension(identity))),
          new px.Extension(IDENTITY_EXTENSION_OID, false, new Uint8Array(utf8String('{}'))),
        ],
      },
      webcrypto as never,
    );
    expect(() => decodeIdentity(twice.toString('pem'))).toThrow(/two identities/);
  });

  it('issues server certs with DNS and IP SANs', async () => {
    const { ca, issuer } = await newIssuer();
    const out = issuer.issueServer(
      {
        publicKeyPem: ecPem(),
        commonName: 'proxy',
        dnsNames: ['localhost', 'proxy.example.com'],
        ipAddresses: ['127.0.0.1', '::1', '2001:db8::8:800:200c:417a', '::ffff:192.0.2.1'],
        notBefore: NB,
        notAfter: NA,
      },
      'acme',
    );
    const cert = new X509Certificate(out.pem);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.subjectAltName).toBe(
      'DNS:localhost, DNS:proxy.example.com, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, ' +
        'IP Address:2001:DB8:0:0:8:800:200C:417A, IP Address:0:0:0:0:0:FFFF:C000:201',
    );
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(cert.checkHost('proxy.example.com')).toBe('proxy.example.com');
    expect(cert.checkIP('::1')).toBe('::1');
    expect(cert.subject).toBe('CN=proxy\nO=acme');
    expect(() =>
      issuer.issueServer(
        {
          publicKeyPem: ecPem(),
          commonName: 'x',
          dnsNames: [],
          ipAddresses: [],
          notBefore: NB,
          notAfter: NA,
        },
        'acme',
      ),
    ).toThrow(/at least one/);
    expect(() =>
      issuer.issueServer(
        {
          publicKeyPem: ecPem(),
          commonName: 'x',
          dnsNames: ['a b'],
          ipAddresses: [],
          notBefore: NB,
          notAfter: NA,
        },
        'acme',
      ),
    ).toThrow(/DNS name/);
  });

  it('issues db client certs with CN = db user', async () => {
    const { issuer } = await newIssuer();
    const out = issuer.issueDbClient(
      { publicKeyPem: ecPem(), dbUser: 'reader', notBefore: NB, notAfter: NA },
      'acme',
    );
    expect(new X509Certificate(out.pem).subject).toBe('CN=reader\nO=acme');
    expect(subjectCommonNames(out.pem)).toEqual(['reader']);
  });

  it('uses 16-byte positive serials and rejects bad windows and weak keys', async () => {
    for (let i = 0; i < 50; i++) {
      const s = randomSerial();
      expect(s.length).toBe(16);
      expect((s[0] as number) & 0x80).toBe(0);
      expect(s[0]).not.toBe(0);
    }
    const { issuer } = await newIssuer();
    const out = issuer.issueDbClient(
      { publicKeyPem: ecPem(), dbUser: 'r', notBefore: NB, notAfter: NA },
      'acme',
    );
    expect(parseX509(out.der).serial.length).toBe(16);
    expect(() =>
      issuer.issueDbClient({ publicKeyPem: ecPem(), dbUser: 'r', notBefore: NA, notAfter: NB }, 'acme'),
    ).toThrow(/notAfter/);
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
    expect(() =>
      issuer.issueDbClient({ publicKeyPem: ed, dbUser: 'r', notBefore: NB, notAfter: NA }, 'acme'),
    ).toThrow(/unsupported TLS key type/);
    expect(() =>
      issuer.issueDbClient({ publicKeyPem: 'nope', dbUser: 'r', notBefore: NB, notAfter: NA }, 'acme'),
    ).toThrow(/PEM public key/);
  });

  it('checks P-256 points itself and matches node on the SPKI it returns', () => {
    for (let i = 0; i < 20; i++) {
      const k = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
      const pem = k.export({ type: 'spki', format: 'pem' }) as string;
      expect(leafSpki(pem).equals(k.export({ type: 'spki', format: 'der' }))).toBe(true);
    }
    const der = Buffer.from(
      generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }),
    );
    der[der.length - 1] = (der[der.length - 1] as number) ^ 1; // y no longer matches x
    expect(() => leafSpki(derToPem(der, 'PUBLIC KEY'))).toThrow(/not a point on the P-256 curve/);
    expect(() => leafSpki(derToPem(Buffer.from('3000', 'hex'), 'PUBLIC KEY'))).toThrow(
      /not valid DER|PEM public key/,
    );
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    expect(
      leafSpki(p384.export({ type: 'spki', format: 'pem' }) as string).equals(
        p384.export({ type: 'spki', format: 'der' }),
      ),
    ).toBe(true);
  });

  it('makes CA certs with the CA extensions', async () => {
    const { ca } = await newIssuer();
    const c = new X509Certificate(ca.certPem);
    expect(c.ca).toBe(true);
    expect(c.subject).toBe('CN=Gatehouse user CA\nO=acme');
    expect(c.verify(c.publicKey)).toBe(true);
    const p = new px.X509Certificate(ca.certPem);
    const ku = p.getExtension(px.KeyUsagesExtension);
    expect(ku?.usages).toBe(px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign);
    expect(ku?.critical).toBe(true);
    expect(p.getExtension(px.BasicConstraintsExtension)?.critical).toBe(true);
    expect(ca.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('spkiPin hashes the SubjectPublicKeyInfo DER', async () => {
    const { ca } = await newIssuer();
    const spki = new X509Certificate(ca.certPem).publicKey.export({ type: 'spki', format: 'der' });
    expect(spkiPin(ca.certPem)).toBe(`sha256:${createHash('sha256').update(spki).digest('hex')}`);
    expect(seq().toString('hex')).toBe('3000');
  });
});
