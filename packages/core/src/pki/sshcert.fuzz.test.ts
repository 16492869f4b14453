import { createPrivateKey, type KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GatehouseError } from '../errors.js';
import { identityArb, text } from '../testing/arbitraries.js';
import { FUZZ_SEED, fuzz, hostileBytes, onlyThrows } from '../testing/fuzz.js';
import { encodeIdentityJson } from './identity-codec.js';
import {
  ed25519PublicKeyToSsh,
  parseSshCertificate,
  parseSshPublicKey,
  SSH_FOREVER,
  SSH_IDENTITY_EXTENSION,
  type SshCertificateFields,
  SshCertSigner,
  sourceAddressList,
  sshCertificateIdentity,
  verifySshCertificate,
} from './sshcert.js';

function seededKey(byte: number): KeyObject {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, byte)]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

const ca = new SshCertSigner(seededKey(1));
const caLine = ed25519PublicKeyToSsh(seededKey(1), 'fuzz CA');

const sshString = (b: Uint8Array | string) => {
  const d = typeof b === 'string' ? Buffer.from(b) : Buffer.from(b);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(d.length);
  return Buffer.concat([n, d]);
};

/** Public key blobs of every certifiable type (the key bytes themselves are opaque to the codec). */
const publicKeyBlob = fc.oneof(
  fc
    .uint8Array({ minLength: 32, maxLength: 32 })
    .map((k) => Buffer.concat([sshString('ssh-ed25519'), sshString(k)])),
  fc
    .tuple(
      fc.constantFrom('ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa'),
      fc.uint8Array({ maxLength: 80 }),
      fc.uint8Array({ maxLength: 80 }),
    )
    .map(([t, a, b]) => Buffer.concat([sshString(t), sshString(a), sshString(b)])),
);

/**
 * Option maps as certificates carry them: '' is a flag, anything else one
 * string. Names include the ones a plain object treats specially.
 */
const options = fc
  .uniqueArray(
    fc.tuple(
      fc.oneof(text(1, 20), fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty')),
      fc.oneof(fc.constant(''), text(1, 40)),
    ),
    { selector: ([name]) => name, maxLength: 4 },
  )
  .map((entries): Record<string, string> => Object.fromEntries(entries));

const secondsDate = fc.integer({ min: 0, max: 253402300799 }).map((s) => new Date(s * 1000));

const certFields: fc.Arbitrary<SshCertificateFields> = fc.record({
  type: fc.constantFrom('user' as const, 'host' as const),
  publicKey: publicKeyBlob,
  nonce: fc.uint8Array({ minLength: 16, maxLength: 48 }),
  serial: fc.bigInt({ min: 0n, max: SSH_FOREVER }),
  keyId: text(0, 30),
  principals: fc.array(text(0, 20), { maxLength: 4 }),
  validAfter: secondsDate,
  validBefore: fc.option(secondsDate, { nil: null }),
  criticalOptions: options,
  extensions: options,
});

/** A valid certificate line OpenSSH would accept from this CA (user, principals, in its window). */
const goodUserCert = fc
  .tuple(identityArb, fc.array(text(1, 12), { minLength: 1, maxLength: 3 }))
  .map(([id, principals]) =>
    ca.sign(
      {
        type: 'user',
        publicKey: ed25519PublicKeyToSsh(seededKey(2)),
        serial: 7n,
        keyId: id.user,
        principals,
        validAfter: new Date('2026-01-01T00:00:00Z'),
        validBefore: new Date('2026-01-02T00:00:00Z'),
        extensions: { 'permit-pty': '', [SSH_IDENTITY_EXTENSION]: encodeIdentityJson(id) },
      },
      'alice@laptop',
    ),
  );

const NOW = new Date('2026-01-01T12:00:00Z');

function gatehouseErrorOnly(read: () => unknown): void {
  onlyThrows(read, GatehouseError);
}

describe('SSH certificates and keys (fuzz)', () => {
  it('parseSshCertificate gives back every field it was signed with', () => {
    fuzz(
      fc.property(certFields, (f) => {
        const c = parseSshCertificate(ca.sign(f).line);
        expect(c.type).toBe(f.type);
        expect(c.publicKey).toEqual(Buffer.from(f.publicKey as Uint8Array));
        expect(c.nonce).toEqual(Buffer.from(f.nonce!));
        expect(c.serial).toBe(f.serial);
        expect(c.keyId).toBe(f.keyId);
        expect(c.principals).toEqual(f.principals);
        expect(c.validAfter).toEqual(f.validAfter);
        expect(c.validBeforeSeconds).toBe(
          f.validBefore === null ? SSH_FOREVER : BigInt(f.validBefore.getTime() / 1000),
        );
        expect(c.criticalOptions).toEqual(f.criticalOptions);
        expect(c.extensions).toEqual(f.extensions);
        expect(c.signatureKey).toEqual(ca.publicKeyBlob);
      }),
      { runs: 200 },
    );
  });

  it('parseSshCertificate and sshCertificateIdentity throw only GatehouseError on damaged certificates', () => {
    const pool = fc.sample(goodUserCert, { seed: FUZZ_SEED, numRuns: 8 }).map((c) => c.blob);
    fuzz(
      fc.property(hostileBytes(fc.constantFrom(...pool)), fc.boolean(), (blob, asLine) => {
        const input = asLine ? `ssh-ed25519-cert-v01@openssh.com ${blob.toString('base64')} x` : blob;
        const c = onlyThrows(() => parseSshCertificate(input), GatehouseError);
        if (c) gatehouseErrorOnly(() => sshCertificateIdentity(c));
      }),
      { runs: 2000 },
    );
  });

  it('verifySshCertificate refuses every certificate whose bytes were changed', () => {
    const pool = fc.sample(goodUserCert, { seed: FUZZ_SEED, numRuns: 8 }).map((c) => c.blob);
    for (const blob of pool) verifySshCertificate(blob, [caLine], NOW);
    fuzz(
      fc.property(hostileBytes(fc.constantFrom(...pool)), (blob) => {
        if (pool.some((p) => p.equals(blob))) return;
        expect(() => verifySshCertificate(blob, [caLine], NOW)).toThrow(GatehouseError);
        gatehouseErrorOnly(() =>
          verifySshCertificate(blob, [caLine], NOW, { principal: 'x', clientAddress: '10.0.0.1' }),
        );
      }),
      { runs: 2000 },
    );
  });

  it('parseSshPublicKey reads back every key line and throws only GatehouseError on any other text', () => {
    fuzz(
      fc.property(
        publicKeyBlob,
        fc.stringMatching(/^[ -~]{0,30}$/),
        fc.string({ maxLength: 120 }),
        (blob, comment, junk) => {
          const type = blob.subarray(4, 4 + blob.readUInt32BE(0)).toString();
          const k = parseSshPublicKey(`${type} ${blob.toString('base64')} ${comment}`);
          expect(k.type).toBe(type);
          expect(k.blob).toEqual(blob);
          expect(k.comment).toBe(comment.trim().split(/\s+/).filter(Boolean).join(' '));
          gatehouseErrorOnly(() => parseSshPublicKey(junk));
          gatehouseErrorOnly(() => parseSshPublicKey(`${type} ${junk}`));
        },
      ),
      { runs: 1000 },
    );
  });

  it('sourceAddressList throws only GH_ERR_CERT_INVALID on any list', () => {
    const entry = fc.oneof(
      fc
        .tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.option(fc.integer({ min: 0, max: 200 })))
        .map(([ip, bits]) => (bits === null ? ip : `${ip}/${bits}`)),
      fc.string({ maxLength: 20 }),
    );
    fuzz(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 4 }), (entries) => {
        gatehouseErrorOnly(() => sourceAddressList(entries.join(',')));
      }),
      { runs: 1000 },
    );
  });
});
