import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { md4 } from './md4.js';
import {
  AV,
  decodeAuthenticate,
  decodeChallenge,
  encodeAuthenticate,
  encodeAvPairs,
  encodeChallenge,
  encodeNegotiate,
  NEGOTIATE,
  NtlmSecurity,
  ntlmv2Response,
  ntowfv2,
} from './ntlm.js';
import { rc4 } from './rc4.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u16 = (s: string) => Buffer.from(s, 'utf16le');

describe('MD4 (RFC 1320 test suite)', () => {
  it.each([
    ['', '31d6cfe0d16ae931b73c59d7e0c089c0'],
    ['a', 'bde52cb31de33e46245e05fbdbd6fb24'],
    ['abc', 'a448017aaf21d8525fc10ae87aa6729d'],
    ['message digest', 'd9130a8164549fe818874806e1c7014b'],
    ['abcdefghijklmnopqrstuvwxyz', 'd79e1c308aa5bbcdeea8ed63df412da9'],
    [
      '12345678901234567890123456789012345678901234567890123456789012345678901234567890',
      'e33b4ddc9c38f2199c3e7b164fcc0536',
    ],
  ])('md4(%j)', (input, digest) => {
    expect(md4(Buffer.from(input)).toString('hex')).toBe(digest);
  });
});

describe('RC4', () => {
  it('matches the classic test vectors', () => {
    expect(rc4(Buffer.from('Key'), Buffer.from('Plaintext')).toString('hex')).toBe('bbf316e8d940af0ad3');
    expect(rc4(Buffer.from('Wiki'), Buffer.from('pedia')).toString('hex')).toBe('1021bf0420');
  });
});

// MS-NLMP 4.2.1 common values and 4.2.4 NTLMv2 authentication.
const USER = 'User';
const DOMAIN = 'Domain';
const PASSWORD = 'Password';
const RANDOM_SESSION_KEY = Buffer.alloc(16, 0x55);
const TIME = Buffer.alloc(8);
const CLIENT_CHALLENGE = Buffer.alloc(8, 0xaa);
const SERVER_CHALLENGE = hex('0123456789abcdef');
/** AV pairs of the 4.2.4 challenge: NetBIOS domain "Domain", NetBIOS server "Server". */
const TARGET_INFO = encodeAvPairs([
  { id: AV.NB_DOMAIN_NAME, value: u16('Domain') },
  { id: AV.NB_COMPUTER_NAME, value: u16('Server') },
]);

describe('NTLMv2 known answers (MS-NLMP 4.2.4)', () => {
  const key = ntowfv2(PASSWORD, USER, DOMAIN);
  const r = ntlmv2Response({
    responseKey: key,
    serverChallenge: SERVER_CHALLENGE,
    clientChallenge: CLIENT_CHALLENGE,
    time: TIME,
    serverName: TARGET_INFO,
  });

  it('NTOWFv2 (4.2.4.1.1)', () => {
    expect(key.toString('hex')).toBe('0c868a403bfd7a93a3001ef22ef02e3f');
  });
  it('the LMv2 response (4.2.4.2.1)', () => {
    expect(r.lmChallengeResponse.toString('hex')).toBe('86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa');
  });
  it('NTProofStr and the session base key (4.2.4.2.2, 4.2.4.1.2)', () => {
    expect(r.ntProofStr.toString('hex')).toBe('68cd0ab851e51c96aabc927bebef6a1c');
    expect(r.sessionBaseKey.toString('hex')).toBe('8de40ccadbc14a82f15cb0ad0de95ca3');
  });
  it('the encrypted random session key (4.2.4.2.3)', () => {
    expect(rc4(r.sessionBaseKey, RANDOM_SESSION_KEY).toString('hex')).toBe(
      'c5dad2544fc9799094ce1ce90bc9d03e',
    );
  });
  it('GSS_WrapEx sealing of "Plaintext" (4.2.4.4)', () => {
    const flags = NEGOTIATE.EXTENDED_SESSIONSECURITY | NEGOTIATE.KEY_EXCH | NEGOTIATE.N128;
    const s = new NtlmSecurity(RANDOM_SESSION_KEY, flags);
    const out = s.seal(u16('Plaintext'));
    expect(out.data.toString('hex')).toBe('54e50165bf1936dc996020c1811b0f06fb5f');
    expect(out.signature.toString('hex')).toBe('010000007fb38ec5c55d497600000000');
  });
});

describe('NTLM messages', () => {
  const challengeFlags =
    (NEGOTIATE.KEY_EXCH |
      NEGOTIATE.N56 |
      NEGOTIATE.N128 |
      NEGOTIATE.VERSION |
      NEGOTIATE.TARGET_INFO |
      NEGOTIATE.EXTENDED_SESSIONSECURITY |
      NEGOTIATE.TARGET_TYPE_SERVER |
      NEGOTIATE.ALWAYS_SIGN |
      NEGOTIATE.NTLM |
      NEGOTIATE.SEAL |
      NEGOTIATE.SIGN |
      NEGOTIATE.OEM |
      NEGOTIATE.UNICODE) >>>
    0;

  it('the 4.2.4 challenge flags are 0xe28a8233', () => {
    expect(Buffer.from(new Uint32Array([challengeFlags]).buffer).toString('hex')).toBe('33828ae2');
  });

  it('AUTHENTICATE carries the NTLMv2 response, the encrypted session key and a MIC a server can verify', () => {
    const negotiate = encodeNegotiate();
    const challenge = encodeChallenge({
      flags: challengeFlags,
      serverChallenge: SERVER_CHALLENGE,
      targetName: u16('Server'),
      targetInfo: TARGET_INFO,
    });
    expect(decodeChallenge(challenge).avPairs.map((p) => p.id)).toEqual([
      AV.NB_DOMAIN_NAME,
      AV.NB_COMPUTER_NAME,
    ]);
    const auth = encodeAuthenticate({
      negotiate,
      challenge,
      credential: { user: USER, domain: DOMAIN, password: PASSWORD },
      clientChallenge: CLIENT_CHALLENGE,
      exportedSessionKey: RANDOM_SESSION_KEY,
      now: 0,
    });
    const f = decodeAuthenticate(auth.message);
    expect(f).toMatchObject({ user: USER, domain: DOMAIN, workstation: '' });
    // What a server recomputes: NTProofStr over its challenge and the client blob, from the stored NT hash.
    const key = ntowfv2(PASSWORD, USER, DOMAIN);
    const blob = f.ntChallengeResponse.subarray(16);
    const proof = createHmac('md5', key).update(SERVER_CHALLENGE).update(blob).digest();
    expect(f.ntChallengeResponse.subarray(0, 16).equals(proof)).toBe(true);
    const base = createHmac('md5', key).update(proof).digest();
    expect(rc4(base, f.encryptedRandomSessionKey).equals(RANDOM_SESSION_KEY)).toBe(true);
    const zeroed = Buffer.from(auth.message);
    zeroed.fill(0, 72, 88);
    const mic = createHmac('md5', RANDOM_SESSION_KEY)
      .update(negotiate)
      .update(challenge)
      .update(zeroed)
      .digest();
    expect(f.mic.equals(mic)).toBe(true);
    // The blob's AV pairs say a MIC is present (MsvAvFlags bit 0x2).
    expect(blob.includes(Buffer.from([AV.FLAGS, 0, 4, 0, 2, 0, 0, 0]))).toBe(true);
  });

  it('refuses a challenge without sealing (the session key binding needs it)', () => {
    const challenge = encodeChallenge({
      flags: (challengeFlags & ~NEGOTIATE.SEAL) >>> 0,
      serverChallenge: SERVER_CHALLENGE,
      targetName: Buffer.alloc(0),
      targetInfo: TARGET_INFO,
    });
    expect(() =>
      encodeAuthenticate({
        negotiate: encodeNegotiate(),
        challenge,
        credential: { user: USER, domain: DOMAIN, password: PASSWORD },
        clientChallenge: CLIENT_CHALLENGE,
        exportedSessionKey: RANDOM_SESSION_KEY,
        now: 0,
      }),
    ).toThrow(/required flags 0x20/);
  });

  it('seal and unseal round-trip between the two sides, in sequence; a tampered or replayed message fails', () => {
    const flags = NEGOTIATE.EXTENDED_SESSIONSECURITY | NEGOTIATE.KEY_EXCH;
    const client = new NtlmSecurity(RANDOM_SESSION_KEY, flags);
    const server = new NtlmSecurity(RANDOM_SESSION_KEY, flags, 'server');
    const a = client.seal(Buffer.from('one'));
    const b = client.seal(Buffer.from('two'));
    expect(a.signature.readUInt32LE(12)).toBe(0);
    expect(b.signature.readUInt32LE(12)).toBe(1);
    expect(server.unseal(a.signature, a.data).toString()).toBe('one');
    expect(server.unseal(b.signature, b.data).toString()).toBe('two');
    const back = server.seal(Buffer.from('three'));
    expect(client.unseal(back.signature, back.data).toString()).toBe('three');
    const tampered = server.seal(Buffer.from('four'));
    tampered.data[0]! ^= 1;
    expect(() => client.unseal(tampered.signature, tampered.data)).toThrow(/does not verify/);
    // A message sealed for the other direction does not verify either.
    const c2 = new NtlmSecurity(RANDOM_SESSION_KEY, flags);
    const own = c2.seal(Buffer.from('x'));
    expect(() => new NtlmSecurity(RANDOM_SESSION_KEY, flags).unseal(own.signature, own.data)).toThrow(
      /does not verify/,
    );
  });
});
