/**
 * Security keys and passkeys in the real browser: Chromium's virtual
 * authenticator (CDP WebAuthn domain) stands in for the key, the gateway
 * verifies with @simplewebauthn/server. Registering two named keys, password
 * + key login, passwordless login, removal and the last-factor rule; and the
 * bad inputs: an assertion made for another origin, a sign counter lower
 * than the stored one, and a replayed challenge. Each refusal is audited.
 */
import { rm } from 'node:fs/promises';
import type { AuditEvent } from '@gatehouse/audit';
import { ManualClock } from '@gatehouse/core';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, totpNow, UiBrowser } from './harness.js';
import { addKey as addKeyOn, addVirtualAuthenticator, assertOnPage, postFrom } from './webauthn-helpers.js';

const PASSWORD = 'correct horse battery staple';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let context: BrowserContext;
let page: Page;
let cdp: CDPSession;
/** A USB security key (the second-factor key) and a platform authenticator (the passkey). */
let usbKey: string;
let platform: string;
const clock = new ManualClock(Date.now());

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({
    webDir: dist,
    clusterName: 'keys.example',
    secondFactor: 'otp',
    clock,
    // The RP id is the host of public_addr: a DNS name, as browsers require (port 0: the bound one).
    values: { public_addr: 'localhost:0', auth: { login_rate_per_minute: 1000 } },
  });
  const { token } = await tg.gw.users.create(
    { name: 'alice', roles: ['access'], password: PASSWORD },
    'admin',
  );
  const info = await tg.gw.users.inspectToken(token!.token);
  const secret = info.totp!.secret;
  await tg.gw.users.acceptToken(token!.token, { password: PASSWORD, otp: totpNow(secret, clock.now()) });
  clock.advance(30_000);
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  ({ context, page } = await ui.newPage(tg.port));
  // The authenticator belongs to this tab: it keeps its credentials across sign-outs and navigations.
  cdp = await context.newCDPSession(page);
  usbKey = await addVirtualAuthenticator(cdp, 'usb');
  platform = await addVirtualAuthenticator(cdp, 'platform', { present: false });
  // The first sign-in: password + TOTP code (the only device so far).
  await page.goto('/web/login');
  await page.getByLabel('User').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Authenticator code').fill(totpNow(secret, clock.now()));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
}, 120_000);

afterAll(async () => {
  await context?.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

/** Waits for an audit event of `type` matching `want` (the search index lags the write a little). */
function auditEvent(type: string, want: (e: Record<string, unknown>) => boolean): Promise<AuditEvent> {
  return waitFor(async () => {
    const r = await tg.gw.admin.searchAudit({ types: [type as never] });
    return r.events.find((e) => want(e as unknown as Record<string, unknown>));
  }, `an audit event ${type}`);
}

async function signOut(): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
}

/**
 * Which authenticator answers: only one that senses a touch (presence) does.
 * Both hold a key of alice's once registered, and an authenticator holding
 * an excluded credential refuses a registration, so each step picks one.
 */
async function use(which: 'usb' | 'platform' | 'both'): Promise<void> {
  for (const [id, on] of [
    [usbKey, which !== 'platform'],
    [platform, which !== 'usb'],
  ] as const) {
    await cdp.send('WebAuthn.setAutomaticPresenceSimulation', { authenticatorId: id, enabled: on });
  }
}

const addKey = (name: string, passkey: boolean) => addKeyOn(page, name, passkey);
const post = (path: string, body: unknown) => postFrom(page, path, body);

/** The stored sign counters of alice's keys, set to `n` (as a cloned key's twin would have pushed them). */
async function setCounters(n: number): Promise<void> {
  const item = await tg.gw.backend.get('users/alice');
  const rec = JSON.parse(item!.value) as { mfaDevices: { kind: string; counter?: number }[] };
  for (const d of rec.mfaDevices) if (d.kind === 'webauthn') d.counter = n;
  await tg.gw.backend.put('users/alice', JSON.stringify(rec));
}

const passkeyButton = () => page.getByRole('button', { name: 'Sign in with a passkey' });

describe('security keys and passkeys in Chromium', () => {
  it('registers two named keys on the account page', async () => {
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByRole('heading', { name: 'Your account' }).waitFor();
    await use('usb');
    await addKey('blue key', false);
    await use('platform');
    await addKey('laptop passkey', true);
    const rows = page.getByTestId('mfa-device');
    await expect.poll(() => rows.allInnerTexts()).toHaveLength(3);
    const text = (await rows.allInnerTexts()).map((r) => r.split('\t').slice(0, 2).join(' | '));
    expect(text).toEqual([
      'authenticator app | Authenticator app',
      'blue key | Security key',
      'laptop passkey | Passkey',
    ]);
    const credentials = [
      ...(await cdp.send('WebAuthn.getCredentials', { authenticatorId: usbKey })).credentials,
      ...(await cdp.send('WebAuthn.getCredentials', { authenticatorId: platform })).credentials,
    ];
    expect(credentials.map((c) => c.isResidentCredential)).toEqual([false, true]);
    // What the gateway stored is what the authenticator made (ids), with no secret in the API view.
    const stored = (await tg.gw.users.get('alice'))!.mfaDevices!.filter((d) => d.kind === 'webauthn');
    expect(stored.map((d) => (d.kind === 'webauthn' ? d.credentialId : '')).sort()).toEqual(
      credentials.map((c) => Buffer.from(c.credentialId, 'base64').toString('base64url')).sort(),
    );
    await auditEvent('mfa.add', (e) => (e.mfa_device as { name?: string })?.name === 'laptop passkey');
    await ui.shot(page, 'account-keys');
  });

  it('signs in with password + security key (no code typed)', async () => {
    await use('usb');
    await signOut();
    await page.getByLabel('User').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
    const e = await auditEvent(
      'user.login',
      (x) =>
        x.success === true &&
        x.method === 'password' &&
        (x.mfa_device as { method?: string })?.method === 'webauthn',
    );
    expect((e as { mfa_device?: { name: string } }).mfa_device?.name).toBe('blue key');
  });

  it('signs in with the passkey alone (passwordless, user verification)', async () => {
    await use('platform');
    await signOut();
    await passkeyButton().click();
    await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
    const e = await auditEvent('user.login', (x) => x.success === true && x.method === 'passwordless');
    expect(e).toMatchObject({
      user: 'alice',
      mfa: true,
      mfa_device: { method: 'webauthn', name: 'laptop passkey' },
    });
  });

  it('refuses a replayed assertion (its challenge was used)', async () => {
    await signOut();
    const sent = page.waitForRequest((r) => r.url().endsWith('/v1/login/passwordless'));
    await passkeyButton().click();
    const body = (await sent).postData()!;
    await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
    const replay = await post('/v1/login/passwordless', body);
    expect(replay.status).toBe(401);
    expect(replay.json.code).toBe('GH_ERR_WEBAUTHN_CHALLENGE_INVALID');
    await auditEvent('user.login', (x) => x.success === false && x.reason === 'webauthn_challenge_invalid');
  });

  it('refuses an assertion made for another origin', async () => {
    // A challenge from the gateway, answered by the same authenticator on a page of another
    // origin (same host, other port: the RP id "localhost" is valid there, so the browser signs).
    const begin = await post('/v1/webauthn/passwordless/begin', {});
    const options = begin.json as { challenge: string; rpId: string };
    const other = 'https://localhost:1/';
    await page.route(`${other}**`, (r) =>
      r.fulfill({ contentType: 'text/html', body: '<title>other</title>' }),
    );
    await page.goto(other);
    const assertion = await assertOnPage(page, options);
    await page.unroute(`${other}**`);
    await page.goto('/web/login');
    const res = await post('/v1/login/passwordless', { webauthn: assertion });
    expect(res.status).toBe(401);
    expect(res.json.code).toBe('GH_ERR_WEBAUTHN_INVALID');
    expect(res.json.title).toMatch(/origin/i);
    const e = await auditEvent('user.login', (x) => x.success === false && x.reason === 'webauthn_invalid');
    expect(e).toMatchObject({
      user: 'alice',
      method: 'passwordless',
      mfa_device: { name: 'laptop passkey' },
    });
  });

  it('refuses a sign counter lower than the stored one, and audits it', async () => {
    await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
    await setCounters(1_000_000);
    await passkeyButton().click();
    await page.getByRole('alert').filter({ hasText: 'sign counter' }).waitFor();
    const e = await auditEvent('user.login', (x) => x.success === false && x.reason === 'webauthn_counter');
    expect(e).toMatchObject({ user: 'alice', mfa_device: { name: 'laptop passkey' } });
    // The counter stays where it was: the refused assertion moved nothing.
    const stored = (await tg.gw.users.get('alice'))!.mfaDevices!.find((d) => d.name === 'laptop passkey');
    expect(stored?.kind === 'webauthn' && stored.counter).toBe(1_000_000);
    await setCounters(0);
    await passkeyButton().click();
    await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
  });

  it('removes a key, and refuses to remove the last second factor', async () => {
    await page.getByRole('link', { name: 'Account' }).click();
    const rows = page.getByTestId('mfa-device');
    await expect.poll(() => rows.count()).toBe(3);
    for (const name of ['blue key', 'authenticator app']) {
      await page.getByRole('button', { name: `Remove ${name}`, exact: true }).click();
      await page.getByRole('button', { name: `Remove ${name} now` }).click();
      await page.getByText(`Removed "${name}".`).waitFor();
    }
    await expect.poll(() => rows.allInnerTexts()).toHaveLength(1);
    await page.getByRole('button', { name: 'Remove laptop passkey', exact: true }).click();
    await page.getByRole('button', { name: 'Remove laptop passkey now' }).click();
    await page.getByRole('alert').filter({ hasText: 'last second-factor device' }).waitFor();
    await ui.shot(page, 'account-last-factor');
    expect(await rows.count()).toBe(1);
    await auditEvent(
      'mfa.remove',
      (x) => x.success === true && (x.mfa_device as { name?: string })?.name === 'blue key',
    );
    await auditEvent('mfa.remove', (x) => x.success === false && x.reason === 'last_factor');
    expect(ui.cspViolations).toEqual([]);
  });
});
