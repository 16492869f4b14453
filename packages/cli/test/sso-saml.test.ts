/**
 * SAML 2.0 single sign-on end to end: `gatehouse start`, a REAL SAML IdP
 * (samlify's IdP side, with an HTML login form) started here, `gatehouse sso
 * add/ls/test`, and `gatehouse login --auth corp-saml --browser none` whose
 * printed URL headless Chromium opens, filling the IdP's login form; the IdP
 * POSTs its signed response to the gateway's ACS. The certificates then work
 * with `gatehouse ssh` against a real sshd, with the login the role takes
 * from an attribute. Every bad input is refused with a clear error, an audit
 * event, and no login. The cases every connector kind shares are in
 * sso-harness.ts; this file has the IdP and the SAML ones.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { type SamlTamper, samlIdpSignIn, startSamlIdp, type TestSamlIdp } from '../../core/test/saml-idp.js';
import { spawnCli } from './harness.js';
import { describeSsoConnector } from './sso-harness.js';

let idp: TestSamlIdp;
const acsPath = '/v1/sso/saml/acs';
const metadataPath = '/v1/sso/saml/corp-saml/metadata';

describeSsoConnector<SamlTamper>({
  kind: 'saml',
  connector: 'corp-saml',
  terms: 'attributes',
  term: 'an attribute',
  callbackPath: acsPath,
  async start(c) {
    idp = await startSamlIdp({
      accounts: {
        alice: {
          nameId: 'alice@example.com',
          attributes: { groups: ['ops', 'staff'], unix_login: [c.login] },
        },
        eve: { nameId: 'eve@example.com', attributes: { groups: ['interns'] } },
      },
      // What an admin gives the IdP: the gateway's own SP metadata.
      spMetadata: async () => (await c.request(metadataPath)).body,
    });
    const doc = join(c.d.root, 'corp-saml.yaml');
    writeFileSync(
      doc,
      [
        'kind: saml',
        'name: corp-saml',
        'display: Corp SAML',
        `idp_metadata_url: ${idp.metadataUrl}`,
        `acs_url: https://localhost:${c.gwPort}${acsPath}`,
        'max_session_ttl: 2h',
        'attributes_to_roles:',
        '  - {name: groups, value: ops, roles: [ops]}',
        '',
      ].join('\n'),
    );
    return { doc, stop: () => idp.stop() };
  },
  signIn: samlIdpSignIn,
  badDoc: {
    what: 'a SAML connector without IdP metadata',
    text: (c) =>
      `kind: saml\nname: bad\nacs_url: https://localhost:${c.gwPort}${acsPath}\nattributes_to_roles: [{name: groups, value: ops, roles: [ops]}]\n`,
    error: (file) => `${file}:1:1: idp_metadata_url: the IdP's metadata is missing`,
  },
  added: {
    title: 'and prints the SP metadata URL; the gateway serves it with the ACS URL',
    prints: (c) =>
      `Give the identity provider this SP metadata URL: https://localhost:${c.gwPort}${metadataPath}`,
    listed: (c) => ({
      issuer_url: idp.metadataUrl,
      client_id: `https://localhost:${c.gwPort}${metadataPath}`,
      sp_metadata_url: `https://localhost:${c.gwPort}${metadataPath}`,
    }),
    async check(c) {
      const md = await c.request(metadataPath);
      expect(md.status).toBe(200);
      expect(md.body).toContain(`entityID="https://localhost:${c.gwPort}${metadataPath}"`);
      expect(md.body).toContain(`Location="https://localhost:${c.gwPort}${acsPath}"`);
      expect(md.body).toContain('WantAssertionsSigned="true"');
    },
  },
  claims: (c) => ({ sub: 'alice@example.com', groups: ['ops', 'staff'], unix_login: c.login }),
  checkCallback: (callback) =>
    expect(new URLSearchParams(callback.postData ?? '').get('SAMLResponse')).toBeTruthy(),
  cases(s) {
    it('refuses the same response under a new login (InResponseTo is not that login request)', async () => {
      const c = s.cluster();
      const posted = new URLSearchParams(s.firstLogin().callback?.postData ?? '');
      const cli = spawnCli(
        ['login', '--proxy', c.d.proxy, '--ca-pin', c.d.pin, '--auth', 'corp-saml', '--browser', 'none'],
        { GATEHOUSE_HOME: c.home('replay') },
      );
      // A failed expectation must not leave the CLI waiting for its callback.
      try {
        const relayState = new URL(await cli.url).searchParams.get('RelayState') ?? '';
        expect(relayState).toMatch(/^[A-Za-z0-9_-]{43}$/);
        const since = c.auditCount();
        const r = await c.request(acsPath, {
          form: { SAMLResponse: posted.get('SAMLResponse') ?? '', RelayState: relayState },
        });
        // The failure goes where the login started: the CLI's listener.
        expect(r.status).toBe(302);
        expect(r.location).toContain('error=GH_ERR_SSO_ASSERTION_INVALID');
        const back = await fetch(r.location!);
        expect(await back.text()).toContain('Login failed');
        const done = await cli.done;
        expect(done.code).not.toBe(0);
        expect(done.stderr).toContain("not this login's request");
        expect(existsSync(join(c.home('replay'), 'profiles.json'))).toBe(false);
        expect(c.ssoLogins(since)).toEqual([
          expect.objectContaining({
            success: false,
            reason: 'sso_assertion_invalid',
            connector: 'corp-saml',
          }),
        ]);
      } finally {
        cli.kill();
      }
    });
  },
  tampers: [
    ['an unsigned assertion', 'unsigned', /no valid signature by the IdP's metadata key/],
    [
      'a signed assertion plus an injected unsigned one (signature wrapping)',
      'wrap-inject',
      /carries 2 assertions \(signature wrapping\)/,
    ],
    [
      'the signed assertion moved inside a forged one (signature wrapping)',
      'wrap-move',
      /carries 2 assertions \(signature wrapping\)/,
    ],
    ['a wrong audience', 'audience', /the audience is "https:\/\/someone-else\.example\.com\/saml"/],
    ['an expired assertion', 'expired', /expired|not valid yet/],
    ['a response signed by another key', 'other-key', /not the IdP's \(not in its metadata\)/],
  ],
  setTamper: (t) => {
    idp.tamper = t;
  },
  invalid: {
    message: 'the SAML response from connector corp-saml is not valid',
    reason: 'sso_assertion_invalid',
  },
  down: {
    what: 'the IdP metadata URL',
    doc: (c) =>
      [
        'kind: saml',
        'name: down',
        'idp_metadata_url: http://127.0.0.1:9/metadata',
        `acs_url: https://localhost:${c.gwPort}${acsPath}`,
        'attributes_to_roles: [{name: groups, value: ops, roles: [ops]}]',
        '',
      ].join('\n'),
    message: 'the SAML metadata of connector down (http://127.0.0.1:9/metadata) cannot be read',
  },
});
