import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { identityArb, isoDate, text } from '../testing/arbitraries.js';
import { FUZZ_SEED, fuzz, type Generated, hostileBytes, onlyCode } from '../testing/fuzz.js';
import { derToPem } from './der.js';
import { createX509Ca, decodeIdentity, parseX509, spkiPin, subjectCommonNames, X509Issuer } from './x509.js';

let issuer: X509Issuer;
let caCert: X509Certificate;
const keys = Array.from(
  { length: 4 },
  () =>
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    }) as string,
);

beforeAll(async () => {
  const ca = await createX509Ca({
    commonName: 'fuzz user CA',
    organization: 'acme',
    notBefore: new Date('2025-01-01T00:00:00Z'),
    notAfter: new Date('2035-01-01T00:00:00Z'),
  });
  issuer = new X509Issuer(ca.certPem, ca.privateKeyPem);
  caCert = new X509Certificate(ca.certPem);
});

/** A validity window X.509 can write (whole seconds, years 0000-9999), notAfter strictly later. */
const window = fc
  .tuple(isoDate(true), isoDate(true))
  .filter(([a, b]) => a.getTime() !== b.getTime())
  .map(([a, b]) => (a < b ? { notBefore: a, notAfter: b } : { notBefore: b, notAfter: a }));

const userCert = fc.record({ identity: identityArb, window, key: fc.nat(keys.length - 1) });

const issueUser = ({ identity, window: w, key }: Generated<typeof userCert>) =>
  issuer.issueUser({ identity, publicKeyPem: keys[key]!, ...w });

describe('X.509 parsing (fuzz)', () => {
  it('decodeIdentity gives back the identity a user certificate was issued with', () => {
    fuzz(
      fc.property(userCert, (u) => {
        const got = decodeIdentity(issueUser(u).der);
        const expires = u.window.notAfter < u.identity.expires ? u.window.notAfter : u.identity.expires;
        expect(got).toEqual({ ...u.identity, expires });
        expect(subjectCommonNames(issueUser(u).pem)).toEqual([u.identity.user]);
      }),
      { runs: 300 },
    );
  });

  it('parseX509, decodeIdentity, subjectCommonNames and spkiPin throw only GH_ERR_CERT_INVALID on damaged certificates', () => {
    // Issued once: mutations shrink fast over a fixed pool, signing inside the property would not.
    const pool = fc.sample(userCert, { seed: FUZZ_SEED, numRuns: 16 }).map((u) => issueUser(u).der);
    fuzz(
      fc.property(hostileBytes(fc.constantFrom(...pool)), fc.boolean(), (der, asPem) => {
        const input = asPem ? derToPem(der, 'CERTIFICATE') : der;
        onlyCode('GH_ERR_CERT_INVALID', () => parseX509(der));
        onlyCode('GH_ERR_CERT_INVALID', () => decodeIdentity(input));
        onlyCode('GH_ERR_CERT_INVALID', () => subjectCommonNames(input));
        onlyCode('GH_ERR_CERT_INVALID', () => spkiPin(input));
      }),
      { runs: 1500 },
    );
  });

  it('server certificates carry exactly the DNS names and IP addresses asked for (as OpenSSL reads them)', () => {
    fuzz(
      fc.property(
        fc.array(fc.stringMatching(/^[A-Za-z0-9*._-]{1,40}$/), { maxLength: 3 }),
        fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 4 }),
        text(1),
        fc.nat(keys.length - 1),
        (dnsNames, ipAddresses, commonName, key) => {
          fc.pre(dnsNames.length + ipAddresses.length > 0);
          const out = issuer.issueServer(
            {
              publicKeyPem: keys[key]!,
              commonName,
              dnsNames,
              ipAddresses,
              notBefore: new Date('2026-01-01T00:00:00Z'),
              notAfter: new Date('2026-01-02T00:00:00Z'),
            },
            'acme',
          );
          const cert = new X509Certificate(out.pem);
          expect(cert.verify(caCert.publicKey)).toBe(true);
          const sans = cert.subjectAltName!.split(', ');
          expect(sans.filter((s) => s.startsWith('DNS:'))).toEqual(dnsNames.map((d) => `DNS:${d}`));
          expect(sans.filter((s) => s.startsWith('IP Address:'))).toHaveLength(ipAddresses.length);
          for (const ip of ipAddresses) expect(cert.checkIP(ip)).toBe(ip);
        },
      ),
      { runs: 300 },
    );
  });
});
