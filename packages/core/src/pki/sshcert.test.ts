import { createPrivateKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import sshpk from 'sshpk';
import { describe, expect, it } from 'vitest';
import { isGatehouseError } from '../errors.js';
import {
  ed25519PublicKeyFromRaw,
  ed25519PublicKeyToSsh,
  ed25519RawPublicKey,
  encodeSshCertificateBody,
  parseSshCertificate,
  parseSshPublicKey,
  type SshCertificateFields,
  SshCertSigner,
  signSshCertificate,
  sshEd25519PublicKeyToKeyObject,
  verifySshCertificate,
} from './sshcert.js';

// Deterministic Ed25519 keys from fixed seeds (PKCS#8 prefix + 32-byte seed).
function seededKey(byte: number): KeyObject {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(32, byte)]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

const caKey = seededKey(1);
const userKey = seededKey(2);
const otherCa = seededKey(3);
const caLine = ed25519PublicKeyToSsh(caKey, 'test CA');
const userLine = ed25519PublicKeyToSsh(userKey, 'alice@laptop');

// Independent little writer for the expected layout (PROTOCOL.certkeys).
const w = {
  u32: (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  },
  u64: (n: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(n);
    return b;
  },
  str: (s: string | Buffer) => {
    const d = typeof s === 'string' ? Buffer.from(s) : s;
    return Buffer.concat([w.u32(d.length), d]);
  },
};

const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2026-01-01T08:00:00Z');

function fields(over: Partial<SshCertificateFields> = {}): SshCertificateFields {
  return {
    type: 'user',
    publicKey: userLine,
    nonce: Buffer.alloc(32, 0xab),
    serial: 42n,
    keyId: 'alice',
    principals: ['alice', 'root'],
    validAfter: T0,
    validBefore: T1,
    criticalOptions: { 'source-address': '127.0.0.1/32', 'force-command': 'uptime' },
    extensions: {
      'permit-pty': '',
      'gatehouse-identity@gatehouse.dev': '{"v":1}',
      'permit-agent-forwarding': '',
    },
    ...over,
  };
}

describe('encodeSshCertificateBody', () => {
  it('lays out every field in PROTOCOL.certkeys order with sorted options', () => {
    const signer = new SshCertSigner(caKey);
    const body = encodeSshCertificateBody(fields(), signer.publicKeyBlob);
    const expected = Buffer.concat([
      w.str('ssh-ed25519-cert-v01@openssh.com'),
      w.str(Buffer.alloc(32, 0xab)),
      w.str(ed25519RawPublicKey(userKey)),
      w.u64(42n),
      w.u32(1),
      w.str('alice'),
      w.str(Buffer.concat([w.str('alice'), w.str('root')])),
      w.u64(BigInt(T0.getTime() / 1000)),
      w.u64(BigInt(T1.getTime() / 1000)),
      w.str(
        Buffer.concat([
          w.str('force-command'),
          w.str(w.str('uptime')),
          w.str('source-address'),
          w.str(w.str('127.0.0.1/32')),
        ]),
      ),
      w.str(
        Buffer.concat([
          w.str('gatehouse-identity@gatehouse.dev'),
          w.str(w.str('{"v":1}')),
          w.str('permit-agent-forwarding'),
          w.str(Buffer.alloc(0)),
          w.str('permit-pty'),
          w.str(Buffer.alloc(0)),
        ]),
      ),
      w.str(Buffer.alloc(0)),
      w.str(Buffer.concat([w.str('ssh-ed25519'), w.str(ed25519RawPublicKey(caKey))])),
    ]);
    expect(body.toString('hex')).toBe(expected.toString('hex'));
  });

  it('writes type 2 for host certificates and 0xffffffffffffffff for "forever"', () => {
    const body = encodeSshCertificateBody(
      fields({ type: 'host', validBefore: null, criticalOptions: {}, extensions: {} }),
      new SshCertSigner(caKey).publicKeyBlob,
    );
    const c = parseSshCertificate(
      Buffer.concat([body, w.str(Buffer.concat([w.str('ssh-ed25519'), w.str(Buffer.alloc(64))]))]),
    );
    expect(c.type).toBe('host');
    expect(c.validBeforeSeconds).toBe(0xffffffffffffffffn);
    expect(c.validBefore.getTime()).toBe(8.64e15);
  });

  it('embeds ECDSA and RSA subject keys field by field', () => {
    for (const type of ['ec', 'rsa'] as const) {
      const pair =
        type === 'ec'
          ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
          : generateKeyPairSync('rsa', { modulusLength: 2048 });
      const line = sshpk
        .parseKey(pair.publicKey.export({ type: 'spki', format: 'pem' }), 'pem')
        .toString('ssh');
      const { line: certLine } = signSshCertificate(fields({ publicKey: line, type: 'host' }), caKey);
      const parsed = parseSshCertificate(certLine);
      expect(parsed.publicKey.equals(parseSshPublicKey(line).blob)).toBe(true);
      expect(parsed.certType).toBe(`${parseSshPublicKey(line).type}-cert-v01@openssh.com`);
    }
  });

  it('rejects unsupported key types and short nonces', () => {
    const dsa = `ssh-dss ${w.str('ssh-dss').toString('base64')}`;
    expect(() => encodeSshCertificateBody(fields({ publicKey: dsa }), Buffer.alloc(0))).toThrow(
      /unsupported SSH key type/,
    );
    expect(() => encodeSshCertificateBody(fields({ nonce: Buffer.alloc(8) }), Buffer.alloc(0))).toThrow(
      /nonce/,
    );
  });
});

describe('parseSshCertificate', () => {
  it('round-trips every field', () => {
    const { line, blob } = signSshCertificate(fields(), caKey, 'alice');
    expect(line.startsWith('ssh-ed25519-cert-v01@openssh.com ')).toBe(true);
    expect(line.endsWith(' alice')).toBe(true);
    for (const c of [parseSshCertificate(line), parseSshCertificate(blob)]) {
      expect(c.certType).toBe('ssh-ed25519-cert-v01@openssh.com');
      expect(c.keyType).toBe('ssh-ed25519');
      expect(c.type).toBe('user');
      expect(c.nonce.equals(Buffer.alloc(32, 0xab))).toBe(true);
      expect(c.publicKey.equals(parseSshPublicKey(userLine).blob)).toBe(true);
      expect(c.serial).toBe(42n);
      expect(c.keyId).toBe('alice');
      expect(c.principals).toEqual(['alice', 'root']);
      expect(c.validAfter.toISOString()).toBe(T0.toISOString());
      expect(c.validBefore.toISOString()).toBe(T1.toISOString());
      expect(c.criticalOptions).toEqual({ 'force-command': 'uptime', 'source-address': '127.0.0.1/32' });
      expect(Object.keys(c.extensions)).toEqual([
        'gatehouse-identity@gatehouse.dev',
        'permit-agent-forwarding',
        'permit-pty',
      ]);
      expect(c.extensions['gatehouse-identity@gatehouse.dev']).toBe('{"v":1}');
      expect(c.signatureKey.equals(parseSshPublicKey(caLine).blob)).toBe(true);
      expect(c.signatureAlgorithm).toBe('ssh-ed25519');
      expect(c.signature.length).toBe(64);
      expect(verify(null, c.body, caKey, c.signature)).toBe(true);
      expect(c.blob.equals(blob)).toBe(true);
    }
  });

  it('is deterministic for a fixed nonce (Ed25519 signatures are)', () => {
    expect(signSshCertificate(fields(), caKey).line).toBe(signSshCertificate(fields(), caKey).line);
  });

  it('rejects truncation, trailing bytes, unsorted options and a mismatched line type', () => {
    const { blob, line } = signSshCertificate(fields(), caKey);
    expect(() => parseSshCertificate(blob.subarray(0, blob.length - 1))).toThrow(/overruns|truncated/);
    expect(() => parseSshCertificate(Buffer.concat([blob, Buffer.from([0])]))).toThrow(/trailing/);
    expect(() => parseSshCertificate(line.replace('ssh-ed25519-cert', 'ssh-rsa-cert'))).toThrow(
      /does not match/,
    );
    // Hand-build extensions out of order.
    const unsorted = Buffer.concat([
      w.str('permit-pty'),
      w.str(Buffer.alloc(0)),
      w.str('permit-agent-forwarding'),
      w.str(Buffer.alloc(0)),
    ]);
    const sorted = encodeSshCertificateBody(
      fields({ criticalOptions: {}, extensions: { 'permit-pty': '', 'permit-agent-forwarding': '' } }),
      Buffer.alloc(0),
    );
    const extStart = sorted.indexOf(w.str('permit-agent-forwarding'));
    const bad = Buffer.concat([
      sorted.subarray(0, extStart),
      unsorted,
      sorted.subarray(extStart + unsorted.length),
    ]);
    expect(() =>
      parseSshCertificate(
        Buffer.concat([bad, w.str(Buffer.concat([w.str('ssh-ed25519'), w.str(Buffer.alloc(64))]))]),
      ),
    ).toThrow(/not sorted/);
  });
});

describe('verifySshCertificate', () => {
  const now = new Date('2026-01-01T01:00:00Z');
  const certFor = (over: Partial<SshCertificateFields> = {}, key = caKey) =>
    signSshCertificate(fields({ criticalOptions: { 'source-address': '127.0.0.1/32' }, ...over }), key).line;
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (isGatehouseError(e)) return e.code;
      throw e;
    }
    return 'ok';
  };

  it('accepts a good certificate and returns it parsed', () => {
    const c = verifySshCertificate(certFor(), [caLine], now, {
      clientAddress: '127.0.0.1',
      principal: 'root',
    });
    expect(c.keyId).toBe('alice');
  });

  it('trusts any of several CA keys (rotation)', () => {
    const c = certFor({}, otherCa);
    expect(code(() => verifySshCertificate(c, [caLine], now, { clientAddress: '127.0.0.1' }))).toBe(
      'GH_ERR_CERT_INVALID',
    );
    expect(
      code(() =>
        verifySshCertificate(c, [caLine, ed25519PublicKeyToSsh(otherCa)], now, {
          clientAddress: '127.0.0.1',
        }),
      ),
    ).toBe('ok');
  });

  it('rejects a tampered body', () => {
    const { blob } = signSshCertificate(fields({ criticalOptions: {} }), caKey);
    const tampered = Buffer.from(blob);
    const at = tampered.indexOf(Buffer.from('alice'));
    tampered[at] = 'm'.charCodeAt(0); // key id "alice" -> "mlice"
    expect(parseSshCertificate(tampered).keyId).toBe('mlice');
    expect(() => verifySshCertificate(tampered, [caLine], now)).toThrow(/signature is invalid/);
  });

  it('rejects a signature made by another key over the same body', () => {
    const good = signSshCertificate(fields({ criticalOptions: {} }), caKey);
    const p = parseSshCertificate(good.blob);
    const forged = Buffer.from(good.blob);
    const sig = sign(null, p.body, otherCa);
    sig.copy(forged, forged.length - 64);
    expect(() => verifySshCertificate(forged, [caLine], now)).toThrow(/signature is invalid/);
  });

  it('enforces type, validity window and principals', () => {
    expect(
      code(() => verifySshCertificate(certFor({ type: 'host', criticalOptions: {} }), [caLine], now)),
    ).toBe('GH_ERR_CERT_INVALID');
    expect(
      code(() => verifySshCertificate(certFor({ criticalOptions: {} }), [caLine], now, { type: 'host' })),
    ).toBe('GH_ERR_CERT_INVALID');
    const opt = { clientAddress: '127.0.0.1' };
    expect(code(() => verifySshCertificate(certFor(), [caLine], new Date(T0.getTime() - 1000), opt))).toBe(
      'GH_ERR_CERT_INVALID',
    );
    expect(code(() => verifySshCertificate(certFor(), [caLine], T0, opt))).toBe('ok');
    expect(code(() => verifySshCertificate(certFor(), [caLine], new Date(T1.getTime() - 1), opt))).toBe('ok');
    expect(code(() => verifySshCertificate(certFor(), [caLine], T1, opt))).toBe('GH_ERR_CERT_EXPIRED');
    expect(code(() => verifySshCertificate(certFor({ principals: [] }), [caLine], now, opt))).toBe(
      'GH_ERR_CERT_INVALID',
    );
    expect(code(() => verifySshCertificate(certFor(), [caLine], now, { ...opt, principal: 'bob' }))).toBe(
      'GH_ERR_ACCESS_DENIED',
    );
  });

  it('rejects unknown critical options and enforces source-address (fail closed without an address)', () => {
    expect(
      code(() =>
        verifySshCertificate(certFor({ criticalOptions: { 'no-such-option': 'x' } }), [caLine], now),
      ),
    ).toBe('GH_ERR_CERT_INVALID');
    expect(
      code(() =>
        verifySshCertificate(certFor({ criticalOptions: { 'verify-required': '' } }), [caLine], now),
      ),
    ).toBe('GH_ERR_CERT_INVALID');
    const c = certFor({ criticalOptions: { 'source-address': '10.0.0.0/8,::1' } });
    expect(code(() => verifySshCertificate(c, [caLine], now))).toBe('GH_ERR_ACCESS_DENIED');
    expect(code(() => verifySshCertificate(c, [caLine], now, { clientAddress: '10.1.2.3' }))).toBe('ok');
    expect(code(() => verifySshCertificate(c, [caLine], now, { clientAddress: '::1' }))).toBe('ok');
    expect(code(() => verifySshCertificate(c, [caLine], now, { clientAddress: '11.0.0.1' }))).toBe(
      'GH_ERR_ACCESS_DENIED',
    );
    const bad = certFor({ criticalOptions: { 'source-address': '10.0.0.0/33' } });
    expect(code(() => verifySshCertificate(bad, [caLine], now, { clientAddress: '10.0.0.1' }))).toBe(
      'GH_ERR_CERT_INVALID',
    );
  });

  it('rejects a critical option named "__proto__" (the parser dropped it, so verification never saw it)', () => {
    // fuzz finding: decodeOptions assigned into a plain object, where "__proto__" sets the
    // prototype instead of a key; the unknown critical option vanished and the cert verified.
    const c = certFor({ criticalOptions: JSON.parse('{"__proto__": "x"}') });
    expect(Object.entries(parseSshCertificate(c).criticalOptions)).toEqual([['__proto__', 'x']]);
    expect(code(() => verifySshCertificate(c, [caLine], now))).toBe('GH_ERR_CERT_INVALID');
  });

  it('rejects host certificates with critical options', () => {
    const c = certFor({ type: 'host', criticalOptions: { 'force-command': 'x' } });
    expect(() => verifySshCertificate(c, [caLine], now, { type: 'host' })).toThrow(/must not carry/);
  });
});

describe('key conversions', () => {
  it('round-trips OpenSSH lines and KeyObjects', () => {
    const back = sshEd25519PublicKeyToKeyObject(userLine);
    expect(ed25519RawPublicKey(back).equals(ed25519RawPublicKey(userKey))).toBe(true);
    expect(ed25519PublicKeyToSsh(back, 'alice@laptop')).toBe(userLine);
    expect(parseSshPublicKey(userLine).comment).toBe('alice@laptop');
  });

  it('strips the leading zero of a 33-byte key and rejects other lengths', () => {
    const raw = ed25519RawPublicKey(userKey);
    const k = ed25519PublicKeyFromRaw(Buffer.concat([Buffer.from([0]), raw]));
    expect(ed25519RawPublicKey(k).equals(raw)).toBe(true);
    expect(() => ed25519PublicKeyFromRaw(Buffer.concat([Buffer.from([1]), raw]))).toThrow(/32 bytes/);
    expect(() => ed25519PublicKeyFromRaw(raw.subarray(1))).toThrow(/32 bytes/);
  });

  it('rejects a line whose type and blob disagree', () => {
    const b64 = parseSshPublicKey(userLine).blob.toString('base64');
    expect(() => parseSshPublicKey(`ssh-rsa ${b64}`)).toThrow(/blob says/);
    expect(() => parseSshPublicKey('garbage')).toThrow(/not an OpenSSH public key/);
  });
});

describe('cross-check with sshpk', () => {
  it('sshpk parses our certificates and agrees on the signature', () => {
    const { line } = signSshCertificate(fields(), caKey, 'alice');
    const cert = sshpk.parseCertificate(line, 'openssh');
    expect(cert.isSignedByKey(sshpk.parseKey(caLine, 'ssh'))).toBe(true);
    expect(cert.isSignedByKey(sshpk.parseKey(ed25519PublicKeyToSsh(otherCa), 'ssh'))).toBe(false);
    expect(cert.subjects.map((s) => s.uid)).toEqual(['alice', 'root']);
    expect(cert.validFrom.toISOString()).toBe(T0.toISOString());
    expect(cert.validUntil.toISOString()).toBe(T1.toISOString());
    expect(cert.serial.toString('hex')).toBe('000000000000002a');
    const sig = (
      cert as unknown as {
        signatures: { openssh: { keyId: string; exts: { name: string; critical: boolean }[] } };
      }
    ).signatures.openssh;
    expect(sig.keyId).toBe('alice');
    expect(sig.exts.map((e) => `${e.critical ? '!' : ''}${e.name}`)).toEqual([
      '!force-command',
      '!source-address',
      'gatehouse-identity@gatehouse.dev',
      'permit-agent-forwarding',
      'permit-pty',
    ]);
    expect(cert.subjectKey.fingerprint('sha256').toString()).toBe(
      sshpk.parseKey(userLine, 'ssh').fingerprint('sha256').toString(),
    );
  });

  it('we parse and verify certificates sshpk made', () => {
    const ca = sshpk.generatePrivateKey('ed25519');
    const subject = sshpk.parseKey(userLine, 'ssh');
    const cert = sshpk.createCertificate(
      [sshpk.identityForUser('bob')],
      subject,
      sshpk.identityForUser('ca'),
      ca,
      {
        validFrom: T0,
        validUntil: T1,
        serial: Buffer.from('0000000000000007', 'hex'),
      },
    );
    const c = verifySshCertificate(cert.toString('openssh'), [ca.toPublic().toString('ssh')], T0);
    expect(c.principals).toEqual(['bob']);
    expect(c.serial).toBe(7n);
    // sshpk's key parts may carry a leading zero; the converted key must still verify.
    const k = sshEd25519PublicKeyToKeyObject(ca.toPublic().toString('ssh'));
    expect(verify(null, c.body, k, c.signature)).toBe(true);
  });
});
