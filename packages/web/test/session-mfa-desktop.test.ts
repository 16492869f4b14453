/**
 * Per-session MFA for desktops (role option require_session_mfa) in Debian's
 * Chromium: the gateway with the RDP adapter relays to weston's RDP backend
 * (a real RDP server; not xrdp, whose tests share global state). The desktop
 * tab asks for the authenticator code before it connects; the token the
 * answer buys opens that desktop and login only; without a check the desktop
 * token is refused with the hint.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rdp } from '../../adapter-rdp/src/index.js';
import { allStarted, startWeston, type Weston } from '../../adapter-rdp/test/peers.js';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, signIn, totpNow, UiBrowser } from './harness.js';
import { postFrom } from './webauthn-helpers.js';

const PASSWORD = 'correct horse battery staple';
const STEP_MS = 30_000;

let dist: string;
let dir: string;
let ui: UiBrowser;
let tg: TestGateway;
let weston: Weston;
/** Signed in with TOTP; `spare` is the one code left in the window (each step is good once per user). */
const users: Record<string, { context: BrowserContext; page: Page; spare: string }> = {};

/** Every event of `type` in the audit log. */
async function events(type: string): Promise<Record<string, unknown>[]> {
  return (await tg.gw.audit.search({ types: [type], limit: 1000 })).events as unknown as Record<
    string,
    unknown
  >[];
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-web-rdp-mfa-'));
  await allStarted([
    buildUi().then((x) => (dist = x)),
    startWeston(dir, [40, 120, 200]).then((w) => (weston = w)),
  ]);
  tg = await startGateway({ webDir: dist, clusterName: 'desk-mfa.example', secondFactor: 'otp' });
  tg.gw.use(rdp());
  await tg.gw.ready();
  await tg.gw.admin.putRole(
    [
      'kind: role',
      'name: desk-mfa',
      'allow:',
      "  desktop_labels: { env: '*' }",
      '  desktop_logins: [Administrator, guest]',
      'options:',
      '  require_session_mfa: true',
      '',
    ].join('\n'),
    { create: true },
  );
  await tg.gw.admin.addDesktop({
    name: 'dev1',
    addr: `127.0.0.1:${weston.port}`,
    labels: { env: 'dev' },
    tls_fingerprint: new X509Certificate(weston.certPem).fingerprint256,
    credentials: [{ login: 'Administrator', password: 'Win-P@ss-1' }],
  });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  for (const name of ['alice', 'bob']) {
    const { token } = await tg.gw.admin.createUser({ name, roles: ['desk-mfa'] });
    const secret = (await tg.gw.users.inspectToken(token!.token)).totp!.secret;
    // Three steps (enroll, sign in, the check) in the window: keep clear of a step boundary.
    if (STEP_MS - (Date.now() % STEP_MS) < 10_000)
      await new Promise((r) => setTimeout(r, STEP_MS - (Date.now() % STEP_MS) + 100));
    const t0 = Date.now();
    const at = (steps: number) => totpNow(secret, new Date(t0 + steps * STEP_MS));
    await tg.gw.users.acceptToken(token!.token, { password: PASSWORD, otp: at(-1) });
    const u = await ui.newPage(tg.port);
    await signIn(u.page, name, PASSWORD, at(0));
    users[name] = { ...u, spare: at(1) };
  }
}, 180_000);

afterAll(async () => {
  for (const u of Object.values(users)) await u.context.close();
  await ui?.close();
  await tg?.close();
  await weston?.stop();
  if (dist) await rm(dist, { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('desktops with require_session_mfa', () => {
  it('without a check the desktop token is refused with the hint; a check for another login does not open this one', async () => {
    const { page, spare } = users.bob!;
    await page.goto('/web/resources');
    const plain = await postFrom(
      page,
      '/v1/desktops/dev1/token',
      { login: 'Administrator' },
      { signedIn: true },
    );
    expect(plain.status).toBe(403);
    expect(plain.json.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
    expect(String(plain.json.title)).toContain('require_session_mfa');
    expect(String(plain.json.hint)).toContain('open desktop dev1 from the Resources page');

    // The tab asks for the check of guest@dev1 instead: its token is refused for Administrator.
    await page.route('**/v1/mfa/session/challenge', (route) =>
      route.continue({
        postData: JSON.stringify({ target: { kind: 'desktop', desktop: 'dev1', login: 'guest' } }),
      }),
    );
    try {
      await page.goto('/web/desktop?name=dev1&login=Administrator');
      const check = page.getByTestId('session-mfa');
      await check.getByLabel('Authenticator code').fill(spare);
      await check.getByRole('button', { name: 'Verify' }).click();
      await page.locator('main[data-state="error"]').waitFor({ timeout: 60_000 });
      await page
        .getByText('MFA check was for desktop "dev1" as guest, not desktop "dev1" as Administrator', {
          exact: false,
        })
        .waitFor();
    } finally {
      await page.unroute('**/v1/mfa/session/challenge');
    }
    const starts = (await events('desktop.session.start')).filter((e) => e.user === 'bob');
    expect(starts).toEqual([]);
  });

  it('the desktop tab asks for the code first; the answer opens that desktop (mfa.session audited)', async () => {
    const { page, spare } = users.alice!;
    await page.goto('/web/desktop?name=dev1&login=Administrator');
    const check = page.getByTestId('session-mfa');
    await check.getByText('desktop dev1 as Administrator', { exact: false }).waitFor();
    // Nothing is connected while the check waits.
    expect(await page.locator('main').getAttribute('data-state')).toBe('connecting');
    await check.getByLabel('Authenticator code').fill(spare);
    await check.getByRole('button', { name: 'Verify' }).click();
    await page.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    await ui.shot(page, 'desktop-session-mfa');
    const ok = await waitFor(
      async () => (await events('mfa.session')).find((e) => e.user === 'alice' && e.success === true),
      'mfa.session',
    );
    expect(ok).toMatchObject({
      target_kind: 'desktop',
      target: 'dev1',
      login: 'Administrator',
      method: 'totp',
    });
    const start = await waitFor(
      async () =>
        (await events('desktop.session.start')).find((e) => e.user === 'alice' && e.success === true),
      'desktop.session.start',
      15_000,
    );
    expect(start).toMatchObject({ server: 'dev1', login: 'Administrator' });
  });
});
