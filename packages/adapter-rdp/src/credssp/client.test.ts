import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CredSspClient, CredSspError, subjectPublicKey } from './client.js';
import { DerError } from './der.js';
import { FakeTarget } from './testing.js';
import {
  CREDSSP_VERSION,
  decodeTSCredentials,
  decodeTSRequest,
  encodeTSCredentials,
  encodeTSRequest,
  tsRequestLength,
} from './tsrequest.js';

const cred = { user: 'Administrator', domain: 'CORP', password: 'Win-P@ss-1' };
const publicKey = randomBytes(270);

function client(pk = publicKey) {
  return new CredSspClient({
    credential: cred,
    publicKey: pk,
    random: (n) => randomBytes(n),
    now: () => Date.now(),
  });
}
function target(version: number, extra: Partial<ConstructorParameters<typeof FakeTarget>[0]> = {}) {
  return new FakeTarget({ ...cred, publicKey, version, serverChallenge: randomBytes(8), ...extra });
}

/** Runs the three steps; returns what the target unsealed. */
function login(c: CredSspClient, t: FakeTarget) {
  const auth = c.onChallenge(t.onNegotiate(c.start()));
  t.onAuthInfo(c.onPubKeyAuth(t.onAuthenticate(auth)));
  return t.credentials;
}

describe('CredSSP client against a CredSSP/NTLM target', () => {
  it.each([2, 3, 4, 5, 6])(
    'version %i: the target verifies NTLMv2, the MIC and the key binding, and unseals the password',
    (v) => {
      const c = client();
      expect(login(c, target(v))).toEqual(cred);
      expect(c.version).toBe(v);
    },
  );

  it('works without a server timestamp (LMv2 response sent)', () => {
    expect(login(client(), target(6, { noTimestamp: true }))).toEqual(cred);
  });

  it('sends a client nonce only from version 5 on', () => {
    for (const [v, nonce] of [
      [4, false],
      [5, true],
    ] as const) {
      const c = client();
      const auth = decodeTSRequest(c.onChallenge(target(v).onNegotiate(c.start())));
      expect(auth.clientNonce !== undefined).toBe(nonce);
      expect(auth.version).toBe(CREDSSP_VERSION);
    }
  });

  it.each([4, 6])(
    'version %i: a target that proves another public key is a MITM: refused, no credential sent',
    (v) => {
      const c = client();
      const t = target(v, { proveKey: randomBytes(270) });
      const auth = c.onChallenge(t.onNegotiate(c.start()));
      const answer = t.onAuthenticate(auth);
      expect(() => c.onPubKeyAuth(answer)).toThrow(expect.objectContaining({ kind: 'mitm' }));
    },
  );

  it('a client bound to another key (the TLS session is not the target’s) is caught by the target', () => {
    const c = client(randomBytes(270));
    const t = target(6);
    expect(() => t.onAuthenticate(c.onChallenge(t.onNegotiate(c.start())))).toThrow(/bound another key/);
  });

  it('a tampered public key proof fails closed', () => {
    const c = client();
    const t = target(6);
    const answer = decodeTSRequest(t.onAuthenticate(c.onChallenge(t.onNegotiate(c.start()))));
    answer.pubKeyAuth![20]! ^= 1;
    expect(() => c.onPubKeyAuth(encodeTSRequest(answer))).toThrow(expect.objectContaining({ kind: 'mitm' }));
  });

  it('a logon failure NTSTATUS is a rejected credential, with its name', () => {
    const c = client();
    const t = target(6, { refuseWith: 0xc000006d });
    const answer = t.onAuthenticate(c.onChallenge(t.onNegotiate(c.start())));
    let err: unknown;
    try {
      c.onPubKeyAuth(answer);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CredSspError);
    expect(err).toMatchObject({ kind: 'rejected', status: 0xc000006d });
    expect((err as Error).message).toMatch(/STATUS_LOGON_FAILURE 0xc000006d/);
  });

  it('steps out of order, a SPNEGO token, or a version below 2 are protocol errors', () => {
    const c = client();
    expect(() => c.onChallenge(Buffer.alloc(0))).toThrow(/out of order/);
    c.start();
    const spnego = encodeTSRequest({ version: 6, negoTokens: [Buffer.from('a1820100', 'hex')] });
    expect(() => c.onChallenge(spnego)).toThrow(/SPNEGO/);
    const c2 = client();
    c2.start();
    expect(() => c2.onChallenge(encodeTSRequest({ version: 1, negoTokens: [Buffer.alloc(8)] }))).toThrow(
      /version 1/,
    );
  });
});

describe('TSRequest and TSCredentials', () => {
  it('round-trip every field', () => {
    const r = {
      version: 6,
      negoTokens: [Buffer.from('one'), Buffer.from('two')],
      authInfo: randomBytes(300),
      pubKeyAuth: randomBytes(48),
      errorCode: 0xc000006d,
      clientNonce: randomBytes(32),
    };
    const der = encodeTSRequest(r);
    expect(decodeTSRequest(der)).toEqual(r);
    expect(tsRequestLength(der.subarray(0, 4))).toBe(der.length);
    expect(decodeTSCredentials(encodeTSCredentials(cred))).toEqual(cred);
  });

  it('decodes a negative errorCode (how some peers encode an NTSTATUS) as unsigned', () => {
    // SEQUENCE { [0] INTEGER 6, [4] INTEGER -1073741715 (0xC000006D) }
    const der = Buffer.from('300fa003020106a40602 04c000006d'.replace(/ /g, ''), 'hex');
    der[1] = der.length - 2;
    expect(decodeTSRequest(der).errorCode).toBe(0xc000006d);
  });

  it('refuses trailing bytes, fields out of order and unknown tags', () => {
    const der = encodeTSRequest({ version: 6 });
    expect(() => decodeTSRequest(Buffer.concat([der, Buffer.from([0])]))).toThrow(DerError);
    expect(() => decodeTSRequest(Buffer.from('3008a1020400a0020100', 'hex'))).toThrow(/order|tag/);
    expect(() => decodeTSRequest(Buffer.from('3007a0030201 06a700'.replace(/ /g, ''), 'hex'))).toThrow(
      DerError,
    );
  });
});

describe('subjectPublicKey', () => {
  it('is the BIT STRING content of an RSA SubjectPublicKeyInfo (the PKCS#1 key)', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { publicKey: k } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const spki = k.export({ type: 'spki', format: 'der' });
    expect(subjectPublicKey(spki).equals(k.export({ type: 'pkcs1', format: 'der' }))).toBe(true);
  });
});
