import fc from 'fast-check';
import type { Identity, Route } from '../identity/types.js';

/**
 * fast-check arbitraries for core's own types, shared by core's fuzz suites
 * (not exported from @gatehouse/core/testing: nothing outside core needs them).
 */

/** Well-formed Unicode text (no lone surrogates: those are not valid UTF-8 in a certificate). */
export const text = (min = 0, max = 24): fc.Arbitrary<string> =>
  fc.string({ unit: 'grapheme', minLength: min, maxLength: max });

/**
 * A Date the identity JSON can carry: ISO 8601 with a four-digit year, ms precision.
 * `wholeSeconds` for certificate times (X.509 and SSH keep whole seconds).
 */
export const isoDate = (wholeSeconds = false): fc.Arbitrary<Date> =>
  fc
    .date({
      min: new Date('0000-01-01T00:00:00.000Z'),
      max: new Date('9999-12-31T23:59:59.999Z'),
      noInvalidDate: true,
    })
    .map((d) => (wholeSeconds ? new Date(Math.floor(d.getTime() / 1000) * 1000) : d));

const route: fc.Arbitrary<Route> = fc.oneof(
  fc.record(
    {
      kind: fc.constant('db' as const),
      name: text(1),
      user: text(1),
      database: text(1),
      protocol: text(1),
    },
    { requiredKeys: ['kind', 'name'] },
  ),
  fc.record({ kind: fc.constant('kube' as const), cluster: text(1) }),
);

/**
 * Trait names as SSO claims or admins write them. "__proto__" is left out:
 * the identity schema (a zod record) drops it on read, so it can never
 * round-trip; it grants nothing either way.
 */
const traitName = text(0, 16).filter((k) => k !== '__proto__');

/** Any identity encodeIdentityJson accepts. */
export const identityArb: fc.Arbitrary<Identity> = fc.record(
  {
    user: text(1),
    roles: fc.array(text(1), { maxLength: 4 }),
    traits: fc.dictionary(traitName, fc.array(text(), { maxLength: 4 }), {
      maxKeys: 4,
      noNullPrototype: true,
    }),
    expires: isoDate(),
    mfaVerifiedAt: isoDate(),
    route,
    loginIp: text(1),
  },
  { requiredKeys: ['user', 'roles', 'traits', 'expires'] },
);
