/**
 * "Sign in with …" in the web UI against REAL identity providers started
 * here: an OpenID Provider (oidc-provider) and a SAML 2.0 IdP (samlify's IdP
 * side with an HTML login form, core/test/saml-idp.ts), both connectors on one
 * gateway, so the login page shows a button for each. For each kind: the
 * button, the provider's pages filled by Chromium, the web session created on
 * the callback (OIDC) or on the IdP's auto-submitted POST to the ACS (SAML,
 * whose metadata comes from a file here: idp_metadata_file, sent by the caller
 * as `idp_metadata`). A login finished in another browser than the one that
 * started it, and claims or attributes that map to no role, are refused on
 * the login page with the gateway's message.
 */
import { rm } from 'node:fs/promises';
import https from 'node:https';
import type { AuditEvent } from '@gatehouse/audit';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { keepLocal, providerSignIn, startTestIdp, type TestIdp } from '../../core/test/oidc-idp.js';
import { samlIdpSignIn, startSamlIdp, type TestSamlIdp } from '../../core/test/saml-idp.js';
import { buildUi, UiBrowser } from './harness.js';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let oidc: TestIdp;
let saml: TestSamlIdp;

/** What differs between the connector kinds in these tests. */
interface Kind {
  kind: 'oidc' | 'saml';
  connector: string;
  button: string;
  /** The user it signs in (a name belongs to one connector: the gateway refuses it from another). */
  user: string;
  signIn(page: Page, account: string): Promise<void>;
  /** The provider's sign-in URL the gateway redirects to, and the parameter that carries the gateway's state. */
  providerUrl(): string;
  stateParam: string;
  /** How the gateway names what maps to no role. */
  noRoles: string;
}

const kinds: Kind[] = [
  {
    kind: 'oidc',
    connector: 'corp',
    button: 'Sign in with Corp',
    user: 'alice@example.com',
    signIn: providerSignIn,
    providerUrl: () => `${oidc.issuer}/auth?`,
    stateParam: 'state=',
    noRoles: 'connector corp: the claims groups=["interns"] map to no role',
  },
  {
    kind: 'saml',
    connector: 'corp-saml',
    button: 'Sign in with Corp SAML',
    user: 'alice@saml.example.com',
    signIn: samlIdpSignIn,
    providerUrl: () => `${saml.url}/sso?`,
    stateParam: 'RelayState=',
    noRoles: 'connector corp-saml: the attributes groups=["interns"] map to no role',
  },
];

function gatewayGet(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(
        `https://localhost:${tg.port}${path}`,
        { ca: tg.gw.exportCa('x509', { type: 'host' }), servername: 'localhost' },
        (res) => {
          let text = '';
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve(text));
        },
      )
      .once('error', reject);
  });
}

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({ webDir: dist, clusterName: 'sso.example' });
  const callback = `https://localhost:${tg.port}/v1/sso/oidc/callback`;
  oidc = await startTestIdp({
    redirectUris: [callback],
    accounts: {
      alice: { sub: 'alice', email: 'alice@example.com', groups: ['ops'] },
      eve: { sub: 'eve', email: 'eve@example.com', groups: ['interns'] },
      // Claims the name of a local user: an IdP must not take over an account it did not make.
      mallory: { sub: 'mallory', email: 'root-admin@example.com', groups: ['ops'] },
    },
  });
  saml = await startSamlIdp({
    accounts: {
      alice: { nameId: 'alice@saml.example.com', attributes: { groups: ['ops'] } },
      eve: { nameId: 'eve@saml.example.com', attributes: { groups: ['interns'] } },
      mallory: { nameId: 'root-admin@example.com', attributes: { groups: ['ops'] } },
    },
    spMetadata: () => gatewayGet('/v1/sso/saml/corp-saml/metadata'),
  });
  // The embedding API: the same calls `gatehouse sso add -f` makes (after reading idp_metadata_file for SAML).
  await tg.gw.admin.putSsoConnector({
    text: [
      'kind: oidc',
      'name: corp',
      'display: Corp',
      `issuer_url: ${oidc.issuer}`,
      `client_id: ${oidc.clientId}`,
      `redirect_url: ${callback}`,
      'scopes: [openid, email, groups]',
      'claims_to_roles: [{claim: groups, value: ops, roles: [auditor]}]',
    ].join('\n'),
    client_secret: oidc.clientSecret,
  });
  await tg.gw.admin.putSsoConnector({
    text: [
      'kind: saml',
      'name: corp-saml',
      'display: Corp SAML',
      'idp_metadata_file: idp-metadata.xml',
      `acs_url: https://localhost:${tg.port}/v1/sso/saml/acs`,
      'attributes_to_roles: [{name: groups, value: ops, roles: [auditor]}]',
    ].join('\n'),
    idp_metadata: await (await fetch(saml.metadataUrl)).text(),
  });
  await tg.gw.admin.createUser({
    name: 'root-admin@example.com',
    roles: ['auditor'],
    password: 'local-pass-123456',
  });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
}, 120_000);

afterAll(async () => {
  await ui?.close();
  await oidc?.stop();
  await saml?.stop();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

/** Waits for an SSO login event like `want` in the audit log (the search index lags the write a little). */
function ssoEvent(want: Record<string, unknown>): Promise<AuditEvent> {
  return waitFor(
    async () => {
      const page = await tg.gw.admin.searchAudit({ types: ['user.login'] });
      return page.events.find(
        (e) =>
          'method' in e &&
          e.method === 'sso' &&
          Object.entries(want).every(([k, v]) => (e as never)[k] === v),
      );
    },
    `an SSO login event ${JSON.stringify(want)}`,
  );
}

describe.each(kinds)('Sign in with an SSO connector ($kind)', (k) => {
  it('the button signs in at the provider and the web session starts', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: k.button, exact: true }).click();
    await k.signIn(page, 'alice');
    await page.getByTestId('current-user').filter({ hasText: k.user }).waitFor();
    // The fragment that carried the CSRF token is gone from the address bar and history.
    expect(new URL(page.url()).hash).toBe('');
    // The session works for API calls that need it (the auditor role reads the audit log).
    const status = await page.evaluate(async () => {
      const r = await fetch('/v1/whoami');
      return { status: r.status, body: await r.json() };
    });
    expect(status).toMatchObject({ status: 200, body: { user: k.user, roles: ['auditor'] } });
    await ssoEvent({ success: true, connector: k.connector, user: k.user });
    await context.close();
  });

  it('refuses a login finished in another browser than the one that started it', async () => {
    const a = await ui.newPage(tg.port);
    await keepLocal(a.context);
    // Browser A starts the login (and gets the binding cookie); it stops at the provider's page.
    let providerUrl = '';
    a.page.on('request', (r) => {
      if (r.url().startsWith(k.providerUrl())) providerUrl = r.url();
    });
    await a.page.goto(`/v1/sso/${k.connector}/web`, { waitUntil: 'domcontentloaded' });
    expect(providerUrl).toContain(k.stateParam);
    // Browser B (say, a victim lured to the link) finishes it.
    const b = await ui.newPage(tg.port);
    await keepLocal(b.context);
    await b.page.goto(providerUrl, { waitUntil: 'domcontentloaded' });
    await k.signIn(b.page, 'alice');
    await b.page.getByText('this login was started in another browser').waitFor();
    expect(new URL(b.page.url()).pathname).toBe('/web/login');
    const who = await b.page.evaluate(async () => (await fetch('/v1/whoami')).status);
    expect(who).toBe(401);
    await ssoEvent({ success: false, reason: 'sso_state_invalid', connector: k.connector });
    await a.context.close();
    await b.context.close();
  });

  it('shows why claims that map to no role are refused', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: k.button, exact: true }).click();
    await k.signIn(page, 'eve');
    await page.getByText(k.noRoles).waitFor();
    await ssoEvent({ success: false, reason: 'sso_no_roles', connector: k.connector });
    await context.close();
  });

  it('refuses a name that belongs to a local user (no account takeover by the provider)', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: k.button, exact: true }).click();
    await k.signIn(page, 'mallory');
    await page
      .getByText(
        `the user name "root-admin@example.com" from connector ${k.connector} belongs to another user`,
      )
      .waitFor();
    const who = await page.evaluate(async () => (await fetch('/v1/whoami')).status);
    expect(who).toBe(401);
    await ssoEvent({ success: false, reason: 'sso_user_conflict', connector: k.connector });
    // The local user is as it was: still local, same roles.
    const local = await tg.gw.admin.getUser('root-admin@example.com');
    expect(local).toMatchObject({ roles: ['auditor'] });
    expect(local.sso).toBeUndefined();
    await context.close();
  });
});

describe('the login page', () => {
  it('a crafted link cannot make it say what it likes (errors are stored, named by id)', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await page.goto(
      `/web/login?sso_error=${encodeURIComponent('Your account is suspended, call +1 555 0100')}`,
    );
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.getByRole('link', { name: 'Sign in with Corp', exact: true }).waitFor();
    await page.getByRole('link', { name: 'Sign in with Corp SAML', exact: true }).waitFor();
    expect(await page.textContent('body')).not.toContain('suspended');
    await context.close();
  });
});
