/**
 * "Sign in with Corp" in the web UI against a REAL OpenID Provider
 * (oidc-provider): the button per connector, the provider's pages filled by
 * Chromium, the web session created on the callback. A login finished in
 * another browser than the one that started it, and claims that map to no
 * role, are refused on the login page with the gateway's message.
 */
import { rm } from 'node:fs/promises';
import type { AuditEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { keepLocal, providerSignIn, startTestIdp, type TestIdp } from '../../core/test/oidc-idp.js';
import { buildUi, UiBrowser } from './harness.js';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let idp: TestIdp;

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({ webDir: dist, clusterName: 'sso.example' });
  const callback = `https://localhost:${tg.port}/v1/sso/oidc/callback`;
  idp = await startTestIdp({
    redirectUris: [callback],
    accounts: {
      alice: { sub: 'alice', email: 'alice@example.com', groups: ['ops'] },
      eve: { sub: 'eve', email: 'eve@example.com', groups: ['interns'] },
    },
  });
  // The embedding API: the same call `gatehouse sso add` makes.
  await tg.gw.admin.putSsoConnector({
    text: [
      'kind: oidc',
      'name: corp',
      'display: Corp',
      `issuer_url: ${idp.issuer}`,
      `client_id: ${idp.clientId}`,
      `redirect_url: ${callback}`,
      'scopes: [openid, email, groups]',
      'claims_to_roles: [{claim: groups, value: ops, roles: [auditor]}]',
    ].join('\n'),
    client_secret: idp.clientSecret,
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

describe('Sign in with an SSO connector', () => {
  it('the button signs in at the provider and the web session starts on the callback', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: 'Sign in with Corp' }).click();
    await providerSignIn(page, 'alice');
    await page.getByTestId('current-user').filter({ hasText: 'alice@example.com' }).waitFor();
    // The fragment that carried the CSRF token is gone from the address bar and history.
    expect(new URL(page.url()).hash).toBe('');
    // The session works for API calls that need it (the auditor role reads the audit log).
    const status = await page.evaluate(async () => {
      const r = await fetch('/v1/whoami');
      return { status: r.status, body: await r.json() };
    });
    expect(status).toMatchObject({ status: 200, body: { user: 'alice@example.com', roles: ['auditor'] } });
    await ssoEvent({ success: true, connector: 'corp', user: 'alice@example.com' });
    await context.close();
  });

  it('refuses a login finished in another browser than the one that started it', async () => {
    const a = await ui.newPage(tg.port);
    await keepLocal(a.context);
    // Browser A starts the login (and gets the binding cookie); it stops at the provider's page.
    let providerUrl = '';
    a.page.on('request', (r) => {
      if (r.url().startsWith(`${idp.issuer}/auth?`)) providerUrl = r.url();
    });
    await a.page.goto('/v1/sso/corp/web', { waitUntil: 'domcontentloaded' });
    expect(providerUrl).toContain('state=');
    // Browser B (say, a victim lured to the link) finishes it.
    const b = await ui.newPage(tg.port);
    await keepLocal(b.context);
    await b.page.goto(providerUrl, { waitUntil: 'domcontentloaded' });
    await providerSignIn(b.page, 'alice');
    await b.page.getByText('this login was started in another browser').waitFor();
    expect(new URL(b.page.url()).pathname).toBe('/web/login');
    const who = await b.page.evaluate(async () => (await fetch('/v1/whoami')).status);
    expect(who).toBe(401);
    await ssoEvent({ success: false, reason: 'sso_state_invalid', connector: 'corp' });
    await a.context.close();
    await b.context.close();
  });

  it('shows why claims that map to no role are refused', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await keepLocal(context);
    await page.goto('/web/login');
    await page.getByRole('link', { name: 'Sign in with Corp' }).click();
    await providerSignIn(page, 'eve');
    await page.getByText('connector corp: the claims groups=["interns"] map to no role').waitFor();
    await ssoEvent({ success: false, reason: 'sso_no_roles', connector: 'corp' });
    await context.close();
  });

  it('a crafted link cannot make the login page say what it likes (errors are stored, named by id)', async () => {
    const { context, page } = await ui.newPage(tg.port);
    await page.goto(
      `/web/login?sso_error=${encodeURIComponent('Your account is suspended, call +1 555 0100')}`,
    );
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.getByRole('link', { name: 'Sign in with Corp' }).waitFor();
    expect(await page.textContent('body')).not.toContain('suspended');
    await context.close();
  });
});
