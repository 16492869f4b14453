/**
 * "Sign in with Corp SAML" in the web UI against a REAL SAML IdP (samlify's
 * IdP side with an HTML login form, test/saml-idp.ts): the button, the IdP's
 * form filled by Chromium, its auto-submitted POST to the ACS, the web session.
 * The IdP's metadata comes from a file here (idp_metadata_file, sent by the
 * caller as `idp_metadata`). A login finished in another browser than the one
 * that started it, and attributes that map to no role, are refused on the
 * login page with the gateway's message.
 */
import { rm } from 'node:fs/promises';
import https from 'node:https';
import type { AuditEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { keepLocal } from '../../core/test/oidc-idp.js';
import { samlIdpSignIn, startSamlIdp, type TestSamlIdp } from '../../core/test/saml-idp.js';
import { buildUi, UiBrowser } from './harness.js';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let idp: TestSamlIdp;

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
  idp = await startSamlIdp({
    accounts: {
      alice: { nameId: 'alice@example.com', attributes: { groups: ['ops'] } },
      eve: { nameId: 'eve@example.com', attributes: { groups: ['interns'] } },
    },
    spMetadata: () => gatewayGet('/v1/sso/saml/corp-saml/metadata'),
  });
  // The embedding API: the same call `gatehouse sso add -f` makes after reading idp_metadata_file.
  await tg.gw.admin.putSsoConnector({
    text: [
      'kind: saml',
      'name: corp-saml',
      'display: Corp SAML',
      'idp_metadata_file: idp-metadata.xml',
      `acs_url: https://localhost:${tg.port}/v1/sso/saml/acs`,
      'attributes_to_roles: [{name: groups, value: ops, roles: [auditor]}]',
    ].join('\n'),
    idp_metadata: await (await fetch(idp.metadataUrl)).text(),
  });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
}, 120_000);

afterAll(async () => {
  await ui?.close();
  await idp?.stop();
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

describe('Sign in with a SAML connector', () => {
  it('the button signs in at the IdP and the web session starts on its POST to the ACS', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: 'Sign in with Corp SAML' }).click();
    await samlIdpSignIn(page, 'alice');
    await page.getByTestId('current-user').filter({ hasText: 'alice@example.com' }).waitFor();
    const status = await page.evaluate(async () => {
      const r = await fetch('/v1/whoami');
      return { status: r.status, body: await r.json() };
    });
    expect(status).toMatchObject({ status: 200, body: { user: 'alice@example.com', roles: ['auditor'] } });
    await ssoEvent({ success: true, connector: 'corp-saml', user: 'alice@example.com' });
    await context.close();
  });

  it('refuses a login finished in another browser than the one that started it', async () => {
    const a = await ui.newPage(tg.port);
    await keepLocal(a.context);
    // Browser A starts the login (and gets the binding cookie); it stops at the IdP's form.
    let idpUrl = '';
    a.page.on('request', (r) => {
      if (r.url().startsWith(`${idp.url}/sso?`)) idpUrl = r.url();
    });
    await a.page.goto('/v1/sso/corp-saml/web', { waitUntil: 'domcontentloaded' });
    expect(idpUrl).toContain('RelayState=');
    // Browser B (a victim lured to the link) finishes it.
    const b = await ui.newPage(tg.port);
    await keepLocal(b.context);
    await b.page.goto(idpUrl, { waitUntil: 'domcontentloaded' });
    await samlIdpSignIn(b.page, 'alice');
    await b.page.getByText('this login was started in another browser').waitFor();
    expect(new URL(b.page.url()).pathname).toBe('/web/login');
    const who = await b.page.evaluate(async () => (await fetch('/v1/whoami')).status);
    expect(who).toBe(401);
    await ssoEvent({ success: false, reason: 'sso_state_invalid', connector: 'corp-saml' });
    await a.context.close();
    await b.context.close();
  });

  it('shows why attributes that map to no role are refused', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: 'Sign in with Corp SAML' }).click();
    await samlIdpSignIn(page, 'eve');
    await page.getByText('connector corp-saml: the attributes groups=["interns"] map to no role').waitFor();
    await ssoEvent({ success: false, reason: 'sso_no_roles', connector: 'corp-saml' });
    await context.close();
  });
});
