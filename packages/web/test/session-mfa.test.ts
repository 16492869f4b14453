import { rm } from 'node:fs/promises';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ssh } from '../../adapter-ssh/src/index.js';
import { builtinNode } from '../../adapter-ssh/src/node/index.js';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, signIn, totpNow, UiBrowser } from './harness.js';

// Per-session MFA in the web terminal (role option require_session_mfa):
// Debian's Chromium on a gateway with the SSH adapter and the built-in node,
// second factor otp. The new-tab form asks for the authenticator code before
// the shell opens; a wrong code is refused and audited; a tab opened without
// the check (from a link) is refused with the reason.

const PASSWORD = 'correct horse battery staple';
const NODE = 'local';
const STEP_MS = 30_000;

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let alice: { context: BrowserContext; page: Page };
let secret: string;
/** The moment the three TOTP steps are counted from (enroll: -1, sign-in: 0, the session check: +1). */
let t0: number;
const at = (steps: number) => totpNow(secret, new Date(t0 + steps * STEP_MS));

const pane = (p: Page) => p.locator('[data-testid="terminal-pane"]:visible');

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({ webDir: dist, clusterName: 'mfa.example', secondFactor: 'otp' });
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
  secret = (await tg.gw.users.inspectToken(token!.token)).totp!.secret;
  // Each step is good once; keep clear of a step boundary so the three stay in the window.
  if (STEP_MS - (Date.now() % STEP_MS) < 10_000)
    await new Promise((r) => setTimeout(r, STEP_MS - (Date.now() % STEP_MS) + 100));
  t0 = Date.now();
  await tg.gw.users.acceptToken(token!.token, { password: PASSWORD, otp: at(-1) });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  alice = await ui.newPage(tg.port);
  await signIn(alice.page, 'alice', PASSWORD, at(0));
}, 120_000);

afterAll(async () => {
  await alice?.context.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

describe('web terminal with require_session_mfa', () => {
  it('asks for the code before the shell opens: a wrong one is refused (audited), the right one opens the terminal', async () => {
    const { page } = alice;
    await page.goto('/web/terminal');
    await page.getByLabel('Login').fill(TEST_LOGIN);
    await page.getByRole('button', { name: 'Open terminal' }).click();
    const codeBox = page.getByLabel(/Authenticator code/);
    const right = at(1);
    await codeBox.fill(String((Number(right) + 1) % 1_000_000).padStart(6, '0'));
    await page.getByRole('button', { name: 'Verify and open terminal' }).click();
    await page.getByText('the authenticator code is not valid', { exact: false }).waitFor();
    expect(await page.locator('[data-testid="terminal-pane"]').count()).toBe(0);
    const failed = await waitFor(async () => {
      const { events } = await tg.gw.admin.searchAudit({ types: ['mfa.session'], limit: 10 });
      return events.find((e) => e.type === 'mfa.session' && !e.success);
    }, 'the failed check in the audit log');
    expect(failed).toMatchObject({ user: 'alice', target_kind: 'node', target: NODE, reason: 'invalid' });

    // The refused answer used its challenge up: the form starts over.
    await page.getByRole('button', { name: 'Open terminal' }).click();
    await codeBox.fill(right);
    await page.getByRole('button', { name: 'Verify and open terminal' }).click();
    await page.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
    await pane(page).locator('.xterm-screen').click();
    await page.keyboard.type('echo mfa-$((6*7))');
    await page.keyboard.press('Enter');
    await pane(page).locator('.xterm-rows').filter({ hasText: 'mfa-42' }).waitFor();
    await ui.shot(page, 'terminal-session-mfa', { fullPage: false });
    const ok = await waitFor(async () => {
      const { events } = await tg.gw.admin.searchAudit({ types: ['mfa.session'], limit: 10 });
      return events.find((e) => e.type === 'mfa.session' && e.success);
    }, 'the check in the audit log');
    expect(ok).toMatchObject({
      user: 'alice',
      target: NODE,
      login: TEST_LOGIN,
      method: 'totp',
      device: 'authenticator app',
    });
    const sessionId = await pane(page).getAttribute('data-session');
    const { events } = await tg.gw.admin.searchAudit({ types: ['session.start'], limit: 20 });
    expect(events.find((e) => e.session_id === sessionId)).toMatchObject({ user: 'alice', server: NODE });
  });

  it('a tab opened from a link, without the check, is refused with the reason', async () => {
    const { page } = alice;
    await page.goto(`/web/terminal?node=${NODE}&login=${TEST_LOGIN}`);
    const end = page.getByTestId('term-end');
    await end.waitFor();
    expect(await end.textContent()).toContain('require_session_mfa');
  });
});
