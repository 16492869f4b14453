import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Identity } from '../identity/types.js';
import { identityArb } from '../testing/arbitraries.js';
import { fuzz, hostileBytes, onlyCode } from '../testing/fuzz.js';
import { decodeIdentityJson, encodeIdentityJson } from './identity-codec.js';

const validJson = identityArb.map(encodeIdentityJson);

/** The identity JSON with one member replaced, removed or added (any JSON value). */
const damagedJson = fc
  .tuple(
    validJson,
    fc.constantFrom(
      'v',
      'user',
      'roles',
      'traits',
      'expires',
      'mfa_verified_at',
      'route',
      'login_ip',
      'extra',
    ),
    fc.option(fc.jsonValue({ maxDepth: 3 }), { nil: undefined }),
  )
  .map(([json, key, value]) => {
    const o = JSON.parse(json) as Record<string, unknown>;
    if (value === undefined) delete o[key];
    else o[key] = value;
    return JSON.stringify(o);
  });

describe('identity JSON (fuzz)', () => {
  it('decodeIdentityJson gives back every identity encodeIdentityJson writes', () => {
    fuzz(
      fc.property(identityArb, (id) => {
        expect(decodeIdentityJson(encodeIdentityJson(id))).toEqual(id);
      }),
      { runs: 1000 },
    );
  });

  it('decodeIdentityJson throws only GH_ERR_CERT_INVALID, and what it returns has real dates', () => {
    const input = fc.oneof(
      damagedJson,
      hostileBytes(validJson.map((j) => Buffer.from(j))).map((b) => b.toString('utf8')),
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.string({ unit: 'binary', maxLength: 100 }),
    );
    fuzz(
      fc.property(input, (json) => {
        const id = onlyCode('GH_ERR_CERT_INVALID', () => decodeIdentityJson(json)) as Identity | undefined;
        if (!id) return;
        expect(Number.isNaN(id.expires.getTime())).toBe(false);
        if (id.mfaVerifiedAt) expect(Number.isNaN(id.mfaVerifiedAt.getTime())).toBe(false);
      }),
      { runs: 3000 },
    );
  });

  it('encodeIdentityJson throws only GH_ERR_VALIDATION for identities it cannot write', () => {
    fuzz(
      fc.property(identityArb, fc.date(), fc.option(fc.date(), { nil: undefined }), (id, expires, mfa) => {
        onlyCode('GH_ERR_VALIDATION', () => encodeIdentityJson({ ...id, expires, mfaVerifiedAt: mfa }));
      }),
      { runs: 1000 },
    );
  });
});
