import { randomBytes } from 'node:crypto';
import { fuzz, hostileBytes, onlyThrows } from '@gatehouse/core/testing';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CredSspClient, CredSspError } from './client.js';
import { DerError } from './der.js';
import { decodeAvPairs, decodeChallenge, encodeAvPairs, encodeChallenge, NtlmError } from './ntlm.js';
import { FakeTarget } from './testing.js';
import {
  decodeTSCredentials,
  decodeTSRequest,
  encodeTSCredentials,
  encodeTSRequest,
  type TSRequest,
} from './tsrequest.js';

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const tsRequest: fc.Arbitrary<TSRequest> = fc.record(
  {
    version: fc.integer({ min: 0, max: 0xffffffff }),
    negoTokens: fc.array(bytes(300), { minLength: 1, maxLength: 3 }),
    authInfo: bytes(300),
    pubKeyAuth: bytes(300),
    errorCode: fc.integer({ min: 0, max: 0xffffffff }),
    clientNonce: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)),
  },
  { requiredKeys: ['version'] },
);
const str = fc.string({ maxLength: 60 });

describe('CredSSP codecs (fuzz)', () => {
  it('TSRequest and TSCredentials round-trip', () => {
    fuzz(
      fc.property(tsRequest, (r) => {
        expect(decodeTSRequest(encodeTSRequest(r))).toEqual(r);
      }),
    );
    fuzz(
      fc.property(str, str, str, (domain, user, password) => {
        // UTF-16LE round trip holds for well-formed strings (lone surrogates are not).
        fc.pre(
          Buffer.from(domain + user + password, 'utf16le').toString('utf16le') === domain + user + password,
        );
        expect(decodeTSCredentials(encodeTSCredentials({ domain, user, password }))).toEqual({
          domain,
          user,
          password,
        });
      }),
    );
  });

  it('hostile TSRequests, TSCredentials and NTLM challenges only raise their codec errors', () => {
    fuzz(
      fc.property(hostileBytes(tsRequest.map(encodeTSRequest)), (b) => {
        const r = onlyThrows(() => decodeTSRequest(b), DerError);
        if (r) expect(decodeTSRequest(encodeTSRequest(r))).toEqual(r);
      }),
    );
    fuzz(
      fc.property(
        hostileBytes(
          fc
            .tuple(str, str, str)
            .map(([d, u, p]) => encodeTSCredentials({ domain: d, user: u, password: p })),
        ),
        (b) => {
          onlyThrows(() => decodeTSCredentials(b), DerError);
        },
      ),
    );
    const challenge = fc
      .record({
        flags: fc.nat(),
        serverChallenge: fc.uint8Array({ minLength: 8, maxLength: 8 }),
        name: bytes(20),
        info: fc.array(fc.record({ id: fc.integer({ min: 1, max: 12 }), value: bytes(20) }), {
          maxLength: 5,
        }),
      })
      .map((c) =>
        encodeChallenge({
          flags: c.flags | 0x00800000,
          serverChallenge: Buffer.from(c.serverChallenge),
          targetName: c.name,
          targetInfo: encodeAvPairs(c.info),
        }),
      );
    fuzz(
      fc.property(hostileBytes(challenge), (b) => {
        onlyThrows(() => decodeChallenge(b), NtlmError, RangeError);
        onlyThrows(() => decodeAvPairs(b), NtlmError, RangeError);
      }),
    );
  });

  it('a client fed hostile target messages fails only with CredSspError, and never sends the credential', () => {
    const cred = { user: 'u', domain: 'd', password: 'secret-pw' };
    const publicKey = randomBytes(64);
    const good = () => {
      const t = new FakeTarget({ ...cred, publicKey, version: 6, serverChallenge: randomBytes(8) });
      const c = new CredSspClient({ credential: cred, publicKey, random: randomBytes, now: () => 0 });
      const challenge = t.onNegotiate(c.start());
      return { c, challenge, answer: t.onAuthenticate(c.onChallenge(challenge)) };
    };
    fuzz(
      fc.property(hostileBytes(fc.constant(good().challenge)), (b) => {
        const c = new CredSspClient({ credential: cred, publicKey, random: randomBytes, now: () => 0 });
        c.start();
        onlyThrows(() => c.onChallenge(b), CredSspError);
      }),
      { maxRuns: 2000 },
    );
    fuzz(
      fc.property(hostileBytes(fc.constant(good().answer)), (b) => {
        // A fresh session each run: the answer must match this session's keys and nonce.
        const { c, answer } = good();
        const out = onlyThrows(() => c.onPubKeyAuth(b), CredSspError);
        // Only the unmodified answer of this very session may release the credential.
        if (out) expect(b.equals(answer)).toBe(true);
      }),
      { maxRuns: 2000 },
    );
  });
});
