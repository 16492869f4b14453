/**
 * The SAML relying party's time checks use the gateway's clock with a
 * bounded skew (60 s), not the system clock samlify reads: responses from the
 * real test IdP (signed now, valid 5 minutes) are checked by a gateway whose
 * clock is moved. samlify alone, reading the system clock, accepts all of
 * them; the gateway's checks decide.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../src/backend/index.js';
import { ManualClock } from '../src/clock.js';
import { connectorFromDoc, type SsoConnector } from '../src/sso/connectors.js';
import { SAML_CLOCK_SKEW_MS, SamlRelyingParty } from '../src/sso/saml.js';
import { startSamlIdp, type TestSamlIdp } from './saml-idp.js';

let idp: TestSamlIdp;
let c: SsoConnector;
const clock = new ManualClock(Date.now());
const backend = new MemoryBackend({ clock, sweepIntervalMs: 0 });
const rp = new SamlRelyingParty({ backend, clock });

beforeAll(async () => {
  idp = await startSamlIdp({
    accounts: { alice: { nameId: 'alice@example.com', attributes: { groups: ['ops'] } } },
    spMetadata: () => rp.metadata(c),
  });
  c = connectorFromDoc(
    {
      kind: 'saml',
      name: 'skew',
      idp_metadata_url: idp.metadataUrl,
      acs_url: 'https://gh.example.com:3080/v1/sso/saml/acs',
      attributes_to_roles: [{ name: 'groups', value: 'ops', roles: ['access'] }],
    },
    'config',
  );
});

afterAll(async () => {
  await idp?.stop();
  await backend.close();
});

/** A fresh login's response, checked with the gateway's clock `offsetMs` from now. */
async function checkedAt(offsetMs: number) {
  const nonce = randomBytes(32).toString('base64url');
  // The AuthnRequest the IdP would answer (its id is what InResponseTo must name).
  await rp.authorizationUrl(c, { state: randomBytes(32).toString('base64url'), nonce });
  const response = await idp.respond(SamlRelyingParty.requestId(nonce), 'alice');
  clock.set(Date.now() + offsetMs);
  return rp.exchange(c, new URLSearchParams({ SAMLResponse: response }), { nonce });
}

describe('SAML NotBefore / NotOnOrAfter by the gateway clock, with bounded skew', () => {
  it('accepts an assertion within its window and within the skew after its end', async () => {
    await expect(checkedAt(0)).resolves.toMatchObject({ sub: 'alice@example.com', groups: 'ops' });
    // The assertion ends 5 minutes after it was made; 30 s past that is within the skew.
    await expect(checkedAt(5 * 60_000 + SAML_CLOCK_SKEW_MS / 2)).resolves.toMatchObject({
      sub: 'alice@example.com',
    });
  });

  it('refuses it once the skew after NotOnOrAfter has passed', async () => {
    await expect(checkedAt(5 * 60_000 + SAML_CLOCK_SKEW_MS + 5_000)).rejects.toMatchObject({
      code: 'GH_ERR_SSO_ASSERTION_INVALID',
      message: expect.stringContaining('the assertion expired at'),
    });
  });

  it('refuses it before NotBefore minus the skew (a gateway clock behind the IdP)', async () => {
    await expect(checkedAt(-(SAML_CLOCK_SKEW_MS + 30_000))).rejects.toMatchObject({
      code: 'GH_ERR_SSO_ASSERTION_INVALID',
      message: expect.stringContaining('is not valid before'),
    });
  });
});
