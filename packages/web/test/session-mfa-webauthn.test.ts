/**
 * A security key answers the per-session MFA check of the web terminal
 * (role option require_session_mfa), in Debian's Chromium with a CDP virtual
 * authenticator, on a gateway with the SSH adapter and the built-in node: the
 * new-tab form offers "Use security key" besides the code, the key's
 * assertion opens the shell and `mfa.session` names the key; an assertion
 * made for this target but sent as the answer to another target's challenge
 * is refused and audited.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ssh } from '../../adapter-ssh/src/index.js';
import { builtinNode } from '../../adapter-ssh/src/node/index.js';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, totpNow, UiBrowser } from './harness.js';
import { addKey, addVirtualAuthenticator, postFrom } from './webauthn-helpers.js';

const PASSWORD = 'correct horse battery staple';
const NODE = 'local';
const STEP_MS = 30_000;

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let alice: { context: BrowserContext; page: Page };

const pane = (p: Page) => p.locator('[data-testid="terminal-pane"]:visible');

/** The newest mfa.session event matching `want` (the search index lags the write a little). */
function mfaEvent(want: (e: Record<string, unknown>) => boolean) {
  return waitFor(async () => {
    const { events } = await tg.gw.admin.searchAudit({ types: ['mfa.session'], limit: 10 });
    return events.find((e) => want(e as unknown as Record<string, unknown>)) as
      | Record<string, unknown>
      | undefined;
  }, 'the mfa.session event');
}

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({
    webDir: dist,
    clusterName: 'keys-mfa.example',
    secondFactor: 'otp',
    // The RP id is the host of public_addr: a DNS name, as browsers require (port 0: the bound one).
    values: { public_addr: 'localhost:0' },
  });
  tg.gw.use(ssh());
  tg.gw.use(builtinNode({ name: NODE }));
  await tg.gw.ready();
  await tg.gw.admin.putRole(
    [
      'kind: role',
      'name: term-mfa',
      'allow:',
      '  logins: ["{{internal.logins}}"]',
      '  node_labels: { "*": "*" }',
      'options:',
      '  require_session_mfa: true',
      '',
    ].join('\n'),
    { create: true },
  );
  const { token } = await tg.gw.admin.createUser({
    name: 'alice',
    roles: ['term-mfa'],
    traits: { logins: [TEST_LOGIN] },
  });
  const secret = (await tg.gw.users.inspectToken(token!.token)).totp!.secret;
  // Two steps: enroll, then sign in (each step is good once); keep clear of a step boundary.
  if (STEP_MS - (Date.now() % STEP_MS) < 10_000)
    await new Promise((r) => setTimeout(r, STEP_MS - (Date.now() % STEP_MS) + 100));
  const t0 = Date.now();
  await tg.gw.users.acceptToken(token!.token, {
    password: PASSWORD,
    otp: totpNow(secret, new Date(t0 - STEP_MS)),
  });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  alice = await ui.newPage(tg.port);
  const { page } = alice;
  // The key belongs to this tab (a USB security key that senses a touch at once).
  await addVirtualAuthenticator(await alice.context.newCDPSession(page), 'usb');
  await page.goto('/web/login');
  await page.getByLabel('User').fill('alice');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByLabel('Authenticator code').fill(totpNow(secret, new Date(t0)));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByTestId('current-user').filter({ hasText: 'alice' }).waitFor();
  await page.getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  await addKey(page, 'blue key', false);
}, 120_000);

afterAll(async () => {
  await alice?.context.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

/** Opens the new-tab form for TEST_LOGIN on NODE up to the check. */
async function startCheck(page: Page): Promise<void> {
  await page.goto('/web/terminal');
  await page.getByLabel('Login').fill(TEST_LOGIN);
  await page.getByRole('button', { name: 'Open terminal' }).click();
  await page.getByRole('button', { name: 'Use security key' }).waitFor();
}

describe('web terminal with require_session_mfa and a security key', () => {
  it("an assertion for this target sent as the answer to another target's challenge is refused (audited)", async () => {
    const { page } = alice;
    await startCheck(page);
    // Another target's check, started by the same signed-in browser.
    const other = await postFrom(
      page,
      '/v1/mfa/session/challenge',
      { target: { kind: 'node', node: NODE, login: 'root' } },
      { signedIn: true },
    );
    expect(other).toMatchObject({ status: 200, json: { required: true } });
    // The key signs the form's challenge (for TEST_LOGIN@local); the answer names the other check.
    await page.route('**/v1/mfa/session/certs', (route) =>
      route.continue({
        postData: JSON.stringify({
          ...route.request().postDataJSON(),
          challenge_id: other.json.challenge_id,
        }),
      }),
    );
    try {
      await page.getByRole('button', { name: 'Use security key' }).click();
      await page.getByText('this security key challenge is unknown, expired or already used').waitFor();
    } finally {
      await page.unroute('**/v1/mfa/session/certs');
    }
    expect(await page.locator('[data-testid="terminal-pane"]').count()).toBe(0);
    const refused = await mfaEvent((e) => e.success === false);
    expect(refused).toMatchObject({
      user: 'alice',
      target_kind: 'node',
      target: NODE,
      login: 'root',
      method: 'webauthn',
      reason: 'challenge_invalid',
      code: 'GH1003W',
    });
  });

  it('"Use security key" opens the shell; mfa.session names the key', async () => {
    const { page } = alice;
    await startCheck(page);
    // The code is still offered (alice has an authenticator app too).
    await page.getByLabel('Authenticator code').waitFor();
    await page.getByRole('button', { name: 'Use security key' }).click();
    await page.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
    await pane(page).locator('.xterm-screen').click();
    await page.keyboard.type('echo key-$((6*7))');
    await page.keyboard.press('Enter');
    await pane(page).locator('.xterm-rows').filter({ hasText: 'key-42' }).waitFor();
    const ok = await mfaEvent((e) => e.success === true);
    const key = (await tg.gw.users.get('alice'))!.mfaDevices!.find((d) => d.kind === 'webauthn')!;
    expect(ok).toMatchObject({
      user: 'alice',
      target: NODE,
      login: TEST_LOGIN,
      method: 'webauthn',
      device: 'blue key',
      mfa_device: { method: 'webauthn', name: 'blue key', id: key.id },
      code: 'GH1003I',
    });
    // The key's sign counter moved: the assertion was verified, not skipped.
    expect(key.kind === 'webauthn' && key.lastUsedAt).toBeTruthy();
    const sessionId = await pane(page).getAttribute('data-session');
    const { events } = await tg.gw.admin.searchAudit({ types: ['session.start'], limit: 20 });
    expect(events.find((e) => e.session_id === sessionId)).toMatchObject({ user: 'alice', server: NODE });
  });
});

describe('web file transfer with require_session_mfa', () => {
  const name = `mfa-files-${randomBytes(4).toString('hex')}.txt`;

  /** A tab on NODE as TEST_LOGIN opened from a link (refused: no check) still has the Files panel. */
  async function filesPanel(page: Page) {
    await page.goto(`/web/terminal?node=${NODE}&login=${TEST_LOGIN}`);
    await page.getByTestId('term-end').waitFor();
    await pane(page).getByRole('button', { name: 'Files' }).click();
    return pane(page).getByTestId('files');
  }

  it('without a check /v1/files is refused with the reason; a token bound to another login is refused for this one', async () => {
    const { page } = alice;
    const files = await filesPanel(page);
    const plain = await page.evaluate(async (q) => {
      const r = await fetch(`/v1/files?${q}`);
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    }, new URLSearchParams({ node: NODE, login: TEST_LOGIN, path: 'x' }).toString());
    expect(plain.status).toBe(403);
    expect(plain.json.code).toBe('GH_ERR_SESSION_MFA_REQUIRED');
    expect(String(plain.json.title)).toContain('require_session_mfa');

    // The page asks for the check of root@NODE instead (the key signs that challenge): its token opens root's only.
    await page.route('**/v1/mfa/session/challenge', (route) =>
      route.continue({
        postData: JSON.stringify({ target: { kind: 'node', node: NODE, login: 'root' } }),
      }),
    );
    try {
      await files.getByLabel('Path to download').fill(name);
      await files.getByRole('button', { name: 'Download' }).click();
      await page.getByTestId('session-mfa').getByRole('button', { name: 'Use security key' }).click();
      await files
        .getByText(`MFA check was for root@${NODE}, not ${TEST_LOGIN}@${NODE}`, { exact: false })
        .waitFor();
    } finally {
      await page.unroute('**/v1/mfa/session/challenge');
    }
  });

  it('an upload and a download each ask for the check ("Use security key") and run with its token (audited)', async () => {
    const { page } = alice;
    const files = await filesPanel(page);
    const before = (await tg.gw.admin.searchAudit({ types: ['mfa.session'], limit: 100 })).events.filter(
      (e) => e.type === 'mfa.session' && e.success,
    ).length;
    await files.getByLabel('File to upload').setInputFiles({
      name,
      mimeType: 'text/plain',
      buffer: Buffer.from('checked upload\n'),
    });
    await files.getByRole('button', { name: 'Upload', exact: true }).click();
    const check = page.getByTestId('session-mfa');
    await check.getByText(`a file transfer as ${TEST_LOGIN}@${NODE}`, { exact: false }).waitFor();
    // The code is offered too (alice has an authenticator app).
    await check.getByLabel('Authenticator code').waitFor();
    await check.getByRole('button', { name: 'Use security key' }).click();
    await files.getByText(`Uploaded ${name} to ${name} on ${NODE}`, { exact: false }).waitFor();

    await files.getByLabel('Path to download').fill(name);
    const download = page.waitForEvent('download');
    await files.getByRole('button', { name: 'Download' }).click();
    await check.getByRole('button', { name: 'Use security key' }).click();
    const d = await download;
    expect((await readFile(await d.path())).toString()).toBe('checked upload\n');
    await files.getByText(`Downloaded ${name} from ${NODE}`, { exact: false }).waitFor();

    const checks = await waitFor(async () => {
      const { events } = await tg.gw.admin.searchAudit({ types: ['mfa.session'], limit: 100 });
      const ok = events.filter((e) => e.type === 'mfa.session' && e.success);
      return ok.length >= before + 2 ? ok : undefined;
    }, 'two more checks in the audit log');
    expect(checks[0]).toMatchObject({ user: 'alice', target: NODE, login: TEST_LOGIN, method: 'webauthn' });
    const { events } = await tg.gw.admin.searchAudit({ types: ['sftp'], limit: 50 });
    const actions = events
      .filter((e) => (e as { path?: string }).path?.endsWith(name))
      .map((e) => (e as { action?: string }).action);
    expect(actions).toEqual(expect.arrayContaining(['write', 'read']));
  });
});
