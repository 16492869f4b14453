/**
 * OIDC single sign-on end to end: `gatehouse start`, a REAL OpenID Provider
 * (oidc-provider) started here, `gatehouse sso add/ls/test`, and
 * `gatehouse login --auth corp --browser none` whose printed URL headless
 * Chromium opens, filling the provider's login and consent pages. The
 * certificates then work with `gatehouse ssh` against a real sshd, with the
 * login the role takes from a claim. Every bad input is refused with a
 * clear error, an audit event, and no login. The cases every connector kind
 * shares are in sso-harness.ts; this file has the provider and the OIDC ones.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { providerSignIn, startTestIdp, type Tamper, type TestIdp } from '../../core/test/oidc-idp.js';
import { describeSsoConnector } from './sso-harness.js';

let idp: TestIdp;
const callbackPath = '/v1/sso/oidc/callback';
const now = () => Math.floor(Date.now() / 1000);

describeSsoConnector<Tamper>({
  kind: 'oidc',
  connector: 'corp',
  terms: 'claims',
  term: 'a claim',
  callbackPath,
  async start(c) {
    idp = await startTestIdp({
      redirectUris: [`https://localhost:${c.gwPort}${callbackPath}`],
      accounts: {
        alice: { sub: 'alice', email: 'alice@example.com', groups: ['ops', 'staff'], unix_login: [c.login] },
        eve: { sub: 'eve', email: 'eve@example.com', groups: ['interns'] },
      },
    });
    writeFileSync(join(c.d.root, 'corp.secret'), `${idp.clientSecret}\n`);
    const doc = join(c.d.root, 'corp.yaml');
    writeFileSync(
      doc,
      [
        'kind: oidc',
        'name: corp',
        'display: Corp',
        `issuer_url: ${idp.issuer}`,
        `client_id: ${idp.clientId}`,
        'client_secret_file: corp.secret',
        `redirect_url: https://localhost:${c.gwPort}${callbackPath}`,
        'scopes: [openid, email, groups, unix]',
        'username_claim: email',
        'max_session_ttl: 2h',
        'claims_to_roles:',
        '  - {claim: groups, value: ops, roles: [ops]}',
        '',
      ].join('\n'),
    );
    return { doc, stop: () => idp.stop() };
  },
  signIn: providerSignIn,
  badDoc: {
    what: 'a document with a misspelled key',
    text: () => 'kind: oidc\nname: bad\nissuer_url: https://idp.example.com\nclient_idd: x\n',
    error: (file) => `${file}:4:1: client_idd: unknown key "client_idd" (did you mean "client_id"?)`,
  },
  added: {
    title: 'with its secret sealed: listed without it, absent in clear from the data dir',
    prints: (c) => `https://localhost:${c.gwPort}${callbackPath}`,
    listed: () => ({ issuer_url: idp.issuer, has_client_secret: true }),
    async check(c, ls) {
      expect(ls).not.toContain(idp.clientSecret);
      for (const f of readdirSync(c.d.dataDir).filter((n) => n.endsWith('.db') || n.endsWith('-wal'))) {
        expect(readFileSync(join(c.d.dataDir, f)).includes(idp.clientSecret)).toBe(false);
      }
    },
  },
  claims: (c) => ({ sub: 'alice', groups: ['ops', 'staff'], unix_login: [c.login] }),
  checkCallback: (callback) => expect(callback.url).toMatch(/state=/),
  cases(s) {
    it('refuses a forged state', async () => {
      const c = s.cluster();
      const since = c.auditCount();
      const r = await c.request(`${callbackPath}?code=abc&state=${randomBytes(32).toString('base64url')}`);
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body).title).toContain('unknown, expired or already used state');
      expect(c.ssoLogins(since)).toEqual([
        expect.objectContaining({ success: false, reason: 'sso_state_invalid' }),
      ]);
    });
  },
  tampers: [
    ['an ID token signed by the wrong key', { kind: 'wrong-key' }, /signature/i],
    ['alg: none', { kind: 'alg-none' }, /alg/i],
    ['a wrong audience', { kind: 'claims', claims: { aud: 'someone-else' } }, /aud/],
    ['a wrong issuer', { kind: 'claims', claims: { iss: 'https://evil.example' } }, /iss/],
    [
      'an expired token',
      { kind: 'claims', claims: { exp: now() - 3600, iat: now() - 7200 } },
      /exp|timestamp/i,
    ],
  ],
  setTamper: (t) => {
    idp.tamper = t;
  },
  invalid: { message: 'the ID token from connector corp is not valid', reason: 'sso_token_invalid' },
  down: {
    what: 'the identity provider',
    doc: (c) =>
      readFileSync(join(c.d.root, 'corp.yaml'), 'utf8')
        .replace('name: corp', 'name: down')
        .replace(idp.issuer, 'http://127.0.0.1:9'),
    message: 'the identity provider of connector down (http://127.0.0.1:9) cannot be reached',
  },
});
