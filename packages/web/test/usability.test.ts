import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileRecordingStore } from '@gatehouse/audit';
import { ManualClock } from '@gatehouse/core';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, searchAuditLog, signIn, typeRole, UiBrowser } from './harness.js';

// Issue 23 in Chromium: role-aware menus, sessions and recordings one can
// tell apart, shareable audit views, a player for wide recordings, 800 px
// windows and keyboard users, the role editor's lines, clickable labels.

const PASSWORD = 'correct horse battery staple';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
let recDir: string;
let admin: { context: BrowserContext; page: Page };
/** Recordings are written on this clock, so their events have the times a test gives them. */
const recClock = new ManualClock(Date.UTC(2026, 4, 1, 9, 30, 0));

beforeAll(async () => {
  dist = await buildUi();
  recDir = await mkdtemp(path.join(os.tmpdir(), 'gh-web-rec-'));
  tg = await startGateway({
    webDir: dist,
    clusterName: 'usability.example',
    recordings: new FileRecordingStore({ dir: recDir, clock: () => recClock.now(), flushMs: 50 }),
  });
  await tg.gw.admin.createUser({
    name: 'admin',
    roles: ['admin', 'access'],
    traits: { logins: ['ubuntu'] },
    password: PASSWORD,
  });
  await tg.gw.admin.createUser({ name: 'audrey', roles: ['auditor'], password: PASSWORD });
  for (const [name, env] of [
    ['pg-a', 'prod'],
    ['pg-b', 'dev'],
    ['pg-c', 'prod'],
  ] as const) {
    await tg.gw.admin.addDatabase({
      name,
      protocol: 'postgres',
      uri: 'postgres://10.0.0.1:5432',
      labels: { env, team: 'payments' },
    });
  }
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  admin = await ui.newPage(tg.port);
  await signIn(admin.page, 'admin', PASSWORD);
}, 120_000);

afterAll(async () => {
  await admin?.context.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
  if (recDir) await rm(recDir, { recursive: true, force: true });
});

const enc = (s: string) => new TextEncoder().encode(s);

/** A finished recording of `session_id` with `events` fed in order. */
async function recording(
  session_id: string,
  opts: { login: string; server: string; cols?: number; command?: string },
  feed: (r: Awaited<ReturnType<TestGateway['gw']['recordings']['create']>>) => void,
): Promise<void> {
  const rec = await tg.gw.recordings.create({
    session_id,
    kind: 'ssh',
    user: 'admin',
    login: opts.login,
    server: opts.server,
    ...(opts.command ? { command: opts.command } : {}),
    cols: opts.cols ?? 80,
    rows: 24,
  });
  feed(rec);
  await rec.close();
}

/** A live kubectl-exec-like session of admin's bound to core's lifecycle (as web.test.ts does). */
async function liveSession(server: string): Promise<string> {
  const user = (await tg.gw.users.get('admin'))!;
  const grant = await tg.gw.authorizer.authorize(
    {
      user: 'admin',
      userId: user.id,
      roles: user.roles,
      traits: { logins: ['root'] },
      expires: new Date(Date.now() + 3600_000),
    },
    { kind: 'node', name: server, labels: {}, login: 'root' },
    { remoteAddr: '192.0.2.9' },
  );
  const live = tg.gw.liveSessions.bind(
    grant,
    { kind: 'kube', protocol: 'kube-exec', login: 'root', server, command: 'sh', interactive: true },
    { terminate: () => live.end() },
  );
  return grant.sessionId;
}

/** The vertical middle of an element on screen. */
async function middle(page: Page, selector: string, nth = 0): Promise<number> {
  const box = await page.locator(selector).nth(nth).boundingBox();
  if (!box) throw new Error(`${selector} #${nth} is not on screen`);
  return box.y + box.height / 2;
}

describe('web UI usability (issue 23)', () => {
  it('role editor: the lint marker and the red line number sit on the line of the error when a line above wraps', async () => {
    const { page } = admin;
    await page.getByRole('link', { name: 'Roles' }).click();
    await page.getByRole('button', { name: 'New role' }).click();
    const long = `${'A description long enough to wrap several times in the editor. '.repeat(8)}end`;
    await typeRole(
      page,
      `kind: role\nname: wrapped\ndescription: ${long}\nallow:\n  logins: [root]\n  loginz: [admin]\n`,
    );
    await page.getByTestId('lint').locator('li.lint-error').filter({ hasText: 'Line 6, column 3' }).waitFor();
    // Line 3 really wraps: it is several rows tall.
    const lines = page.locator('.cm-content .cm-line');
    const h1 = (await lines.nth(0).boundingBox())!.height;
    const h3 = (await lines.nth(2).boundingBox())!.height;
    expect(h3).toBeGreaterThan(2.5 * h1);
    // The red number is "6" and sits beside line 6; so does the lint gutter's marker.
    const bad = page.locator('.cm-lineNumbers .cm-gutterElement.bad');
    await bad.waitFor();
    expect(await bad.allTextContents()).toEqual(['6']);
    const line6 = await lines.nth(5).boundingBox();
    const marker = page.locator('.cm-lint-marker-error');
    await marker.waitFor();
    expect(await marker.count()).toBe(1);
    for (const sel of ['.cm-lineNumbers .cm-gutterElement.bad', '.cm-lint-marker-error']) {
      const y = await middle(page, sel);
      expect(y, sel).toBeGreaterThanOrEqual(line6!.y);
      expect(y, sel).toBeLessThanOrEqual(line6!.y + line6!.height);
    }
    // The last line has its number too.
    expect(await page.locator('.cm-lineNumbers .cm-gutterElement').last().textContent()).toBe('7');
    // Clicking the message puts the cursor on line 6, column 3.
    await page.getByRole('button', { name: 'Line 6, column 3' }).click();
    await page.locator('.cm-activeLine').filter({ hasText: 'loginz: [admin]' }).waitFor();
    await ui.shot(page, 'usability-roles-wrapped-lint');
  });

  it('audit log: no "Play recording" link for a session that only transferred files', async () => {
    const { page } = admin;
    // An SSH session that ran a shell (recorded), and one that only uploaded a file (SFTP, nothing recorded).
    await recording('sess-shell-1', { login: 'ubuntu', server: 'files-node' }, (r) =>
      r.output(enc('$ ls\r\n')),
    );
    for (const [sid, recorded] of [
      ['sess-shell-1', true],
      ['sess-xfer-1', false],
    ] as const) {
      const common = { user: 'admin', session_id: sid, server: 'files-node', login: 'ubuntu' };
      await tg.gw.audit.emit({ type: 'session.start', success: true, ...common });
      if (!recorded)
        await tg.gw.audit.emit({ type: 'sftp', action: 'write', path: 'notes.txt', bytes: 5, ...common });
      await tg.gw.audit.emit({
        type: 'session.end',
        duration_ms: 1000,
        interactive: recorded,
        recorded,
        ...common,
      });
    }
    // A transfer still running: no session.end says so yet, the page asks the recordings API.
    await tg.gw.audit.emit({
      type: 'session.start',
      success: true,
      user: 'admin',
      session_id: 'sess-xfer-2',
      server: 'files-node',
      login: 'ubuntu',
    });
    const xferChecked = page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/v1/recordings/sess-xfer-2',
    );
    await page.goto('/web/audit?q=files-node&show=all');
    const rows = page.locator('tbody tr[data-event-type]');
    await rows.first().waitFor();
    // Both sessions' start events are on the page; the recorded one links its recording.
    expect(await rows.count()).toBe(6);
    await page.locator('a[href="/web/recordings/sess-shell-1"]').first().waitFor();
    expect(await page.locator('a[href="/web/recordings/sess-shell-1"]').count()).toBe(2);
    // The transfer-only sessions link nothing: the ended one says it recorded nothing, the other was checked (404).
    expect((await xferChecked).status()).toBe(404);
    expect(await page.locator('a[href="/web/recordings/sess-xfer-1"]').count()).toBe(0);
    expect(await page.locator('a[href="/web/recordings/sess-xfer-2"]').count()).toBe(0);
    await ui.shot(page, 'usability-audit-transfer-no-play');
  });

  it('an auditor sees no Users or Roles menu, no Add user form, no Terminate, no "+" and no New terminal', async () => {
    const sid = await liveSession('k-audit');
    const a = await ui.newPage(tg.port);
    try {
      const page = a.page;
      await signIn(page, 'audrey', PASSWORD);
      const nav = page.getByRole('navigation', { name: 'Main' });
      await nav.getByRole('link', { name: 'Audit log' }).waitFor();
      expect(await nav.getByRole('link').allTextContents()).toEqual([
        'Cluster',
        'Resources',
        'Audit log',
        'Sessions',
        'Recordings',
        // Everyone's own access requests (and those they may review).
        'Requests',
        // Everyone's own second-factor devices.
        'Account',
      ]);
      expect(await page.getByRole('link', { name: 'New terminal' }).count()).toBe(0);

      await nav.getByRole('link', { name: 'Sessions' }).click();
      const row = page.locator(`tr[data-session="${sid}"]`);
      await row.getByRole('link', { name: 'Watch' }).waitFor();
      expect(await row.getByRole('button', { name: 'Terminate' }).count()).toBe(0);
      await ui.shot(page, 'usability-auditor-sessions');

      // Typed in by hand: the page says access is denied, and offers no form.
      await page.goto('/web/users');
      await page
        .getByRole('alert')
        .filter({ hasText: /denied/i })
        .waitFor();
      expect(await page.getByRole('form', { name: 'Add user' }).count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Add user' }).count()).toBe(0);

      await page.goto('/web/terminal');
      await page.getByRole('heading', { name: 'No terminal to open' }).waitFor();
      expect(await page.getByRole('tab', { name: 'New tab' }).count()).toBe(0);
      await ui.shot(page, 'usability-auditor-terminal', { fullPage: false });
    } finally {
      await a.context.close();
    }
    // The admin, for contrast, is offered all of it.
    await admin.page.goto('/web/sessions');
    await admin.page
      .locator(`tr[data-session="${sid}"]`)
      .getByRole('button', { name: 'Terminate' })
      .waitFor();
    await tg.gw.admin.killSession(sid);
  });

  it('sessions and recordings of the same login@node read differently: short id, start time, command', async () => {
    const { page } = admin;
    await recording('11111111-aaaa-4aaa-8aaa-000000000001', { login: 'gh-test', server: 'vm' }, (r) =>
      r.output(enc('$ uptime\r\n')),
    );
    await recording(
      '22222222-bbbb-4bbb-8bbb-000000000002',
      { login: 'gh-test', server: 'vm', command: 'tail -f /var/log/syslog' },
      (r) => r.output(enc('log line\r\n')),
    );
    await page.goto('/web/recordings');
    const names = page.getByTestId('recording-name');
    await names.filter({ hasText: '22222222' }).waitFor();
    const vm = (await names.allTextContents()).filter((t) => t.startsWith('gh-test@vm'));
    expect(vm).toHaveLength(2);
    expect(new Set(vm).size).toBe(2);
    expect(vm.find((t) => t.includes('11111111'))).toContain('shell');
    expect(vm.find((t) => t.includes('22222222'))).toContain('tail -f /var/log/syslog');
    // Each Play link says which recording it plays (a screen reader lists links by name).
    const plays = await page
      .getByRole('link', { name: /^Play gh-test@vm/ })
      .evaluateAll((as) => as.map((a) => a.getAttribute('aria-label')));
    expect(new Set(plays).size).toBe(2);
    await ui.shot(page, 'usability-recordings-names');

    const s1 = await liveSession('vm');
    const s2 = await liveSession('vm');
    await page.goto('/web/sessions');
    const row = (sid: string) => page.locator(`tr[data-session="${sid}"]`).getByTestId('session-name');
    await row(s2).waitFor();
    const [t1, t2] = [await row(s1).textContent(), await row(s2).textContent()];
    expect(t1).not.toBe(t2);
    expect(t1).toContain(s1.slice(0, 8));
    expect(t2).toContain(s2.slice(0, 8));
    await ui.shot(page, 'usability-sessions-names');
    await tg.gw.admin.killSession(s1);
    await tg.gw.admin.killSession(s2);
  });

  it('audit log: system events hidden by default; a URL with filters reproduces the view; back returns', async () => {
    const { page } = admin;
    const tag = `tag${Date.now()}`;
    await tg.gw.audit.emit({
      type: 'listener.reject',
      reason: 'unknown_protocol',
      error: `${tag} wrong version number (SSL routines)`,
      addr: { remote: '203.0.113.7:5555' },
    });
    await tg.gw.audit.emit({
      type: 'user.login',
      user: 'admin',
      success: true,
      method: 'password',
      mfa: false,
      message: tag,
    });
    await tg.gw.audit.emit({
      type: 'user.login',
      user: 'admin',
      success: false,
      method: 'password',
      reason: 'bad_password',
      error: 'bad password',
      message: tag,
    });

    // The default view: the user's actions, not the listener's noise.
    await page.goto(`/web/audit?q=${tag}`);
    const rows = page.locator('tbody tr[data-event-type]');
    await rows.first().waitFor();
    const types = async () => rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-event-type')));
    expect(await types()).toEqual(['user.login', 'user.login']);
    // "Everything" shows it.
    await page.getByLabel('Show').selectOption('all');
    await searchAuditLog(page, (q) => q.get('q') === tag && !q.has('types'));
    await page.locator('tbody tr[data-event-type="listener.reject"]').waitFor();
    expect(new URL(page.url()).searchParams.get('show')).toBe('all');

    // Filters: warnings only, user admin. The URL carries them.
    await page.getByLabel('Show').selectOption('warnings');
    await page.getByLabel('User', { exact: true }).fill('admin');
    await searchAuditLog(page, (q) => q.get('q') === tag && q.get('user') === 'admin');
    await page.locator('tbody tr[data-event-type]').first().waitFor();
    expect(await types()).toEqual(['user.login']);
    await rows.first().click();
    const panel = page.getByTestId('event-panel');
    await panel.getByTestId('event-json').waitFor();
    const shown = JSON.parse((await panel.getByTestId('event-json').textContent()) ?? '{}');
    expect(shown).toMatchObject({ type: 'user.login', success: false, code: 'GH1001W' });
    const url = new URL(page.url());
    expect(Object.fromEntries(url.searchParams)).toEqual({
      q: tag,
      user: 'admin',
      show: 'warnings',
      event: shown.id,
    });
    await ui.shot(page, 'usability-audit-panel');

    // The same URL in another browser: same filters, same rows, same event open.
    const other = await ui.newPage(tg.port);
    try {
      await signIn(other.page, 'admin', PASSWORD);
      await other.page.goto(url.pathname + url.search);
      const p = other.page.getByTestId('event-panel').getByTestId('event-json');
      await p.waitFor();
      expect(JSON.parse((await p.textContent()) ?? '{}').id).toBe(shown.id);
      expect(await other.page.getByLabel('User', { exact: true }).inputValue()).toBe('admin');
      expect(await other.page.getByLabel('Text').inputValue()).toBe(tag);
      expect(await other.page.getByLabel('Show').inputValue()).toBe('warnings');
      expect(
        await other.page
          .locator('tbody tr[data-event-type]')
          .evaluateAll((trs) => trs.map((t) => t.getAttribute('data-event-id'))),
      ).toEqual([shown.id]);
      await ui.shot(other.page, 'usability-audit-shared-url');
    } finally {
      await other.context.close();
    }

    // Back: the search before (everything, no user filter), its rows and its form.
    await page.goBack();
    await page.locator('tbody tr[data-event-type="listener.reject"]').waitFor();
    expect(await page.getByLabel('Show').inputValue()).toBe('all');
    expect(await page.getByLabel('User', { exact: true }).inputValue()).toBe('');
  });

  it('at 800 px the header collapses into a menu and every control in it is reachable; tables scroll', async () => {
    const narrow = await ui.newPage(tg.port, { width: 800, height: 700 });
    try {
      const page = narrow.page;
      await signIn(page, 'admin', PASSWORD);
      await page.goto('/web/resources');
      await page.getByTestId('page-info').waitFor();
      const menu = page.getByRole('button', { name: 'Menu' });
      await menu.click();
      expect(await menu.getAttribute('aria-expanded')).toBe('true');
      const controls = [
        ...['Cluster', 'Resources', 'Audit log', 'Sessions', 'Recordings', 'Requests', 'Users', 'Roles'].map(
          (n) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: n, exact: true }),
        ),
        page.getByRole('link', { name: 'New terminal' }),
        page.getByRole('button', { name: 'Sign out' }),
        page.getByTestId('current-user'),
      ];
      for (const c of controls) {
        const box = await c.boundingBox();
        expect(box, await c.evaluate((e) => e.textContent)).not.toBeNull();
        expect(box!.x).toBeGreaterThanOrEqual(0);
        expect(box!.x + box!.width).toBeLessThanOrEqual(800);
      }
      await ui.shot(page, 'usability-800-menu-open', { fullPage: false });
      // A link in the menu navigates and closes it.
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit log' }).click();
      await page.getByTestId('audit-events').waitFor();
      expect(await menu.getAttribute('aria-expanded')).toBe('false');
      // The page itself never scrolls sideways: wide tables scroll in their own box.
      for (const p of ['/web/audit', '/web/resources', '/web/users']) {
        await page.goto(p);
        await page.locator('table.grid tbody tr').first().waitFor();
        expect(await page.evaluate(() => document.documentElement.scrollWidth), p).toBeLessThanOrEqual(800);
      }
      await ui.shot(page, 'usability-800-users');
    } finally {
      await narrow.context.close();
    }
  });

  it('every page has its own title, and the first Tab stop is a skip link to the content', async () => {
    const { page } = admin;
    const titles = new Map<string, string>();
    for (const p of [
      '/web/cluster',
      '/web/resources',
      '/web/audit',
      '/web/sessions',
      '/web/recordings',
      '/web/users',
      '/web/roles',
      '/web/recordings/sess-shell-1',
    ]) {
      await page.goto(p);
      await page.getByRole('heading', { level: 1 }).first().waitFor();
      await waitFor(async () => (await page.title()) !== 'Gatehouse', `a title for ${p}`);
      titles.set(p, await page.title());
    }
    expect(new Set(titles.values()).size).toBe(titles.size);
    expect(titles.get('/web/audit')).toBe('Audit log · Gatehouse');
    expect(titles.get('/web/recordings/sess-shell-1')).toBe('Recording sess-she · Gatehouse');

    await page.goto('/web/resources');
    await page.getByTestId('page-info').waitFor();
    await page.keyboard.press('Tab');
    const first = page.locator(':focus');
    expect(await first.textContent()).toBe('Skip to content');
    await first.waitFor(); // visible when focused
    await page.keyboard.press('Enter');
    await waitFor(
      async () => (await page.evaluate(() => document.activeElement?.id)) === 'main',
      'focus on main',
    );
    // The next Tab goes into the page, not through the menu.
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.closest('header'))).toBeNull();
    expect(await page.evaluate(() => document.activeElement?.closest('main') !== null)).toBe(true);
  });

  it('the player shows a 167-column recording readable: fits at 1280 px, scrolls at 800 px, full screen, marks', async () => {
    const row = `${'x'.repeat(160)}-END167`;
    expect(row).toHaveLength(167);
    await recording('sess-wide-1', { login: 'ubuntu', server: 'wide', cols: 167 }, (r) => {
      r.output(enc(`${row}\r\n`));
      recClock.advance(1000);
      r.input(enc('ls -l\r'));
      r.output(enc('total 0\r\n'));
      recClock.advance(1000);
      r.marker('audrey joined as observer');
      recClock.advance(1000);
      r.resize(120, 30);
      r.output(enc('after resize\r\n'));
      recClock.advance(500);
    });
    const { page } = admin;
    await page.goto('/web/recordings/sess-wide-1');
    const screen = page.getByTestId('player-screen');
    await screen.locator('.xterm-rows').filter({ hasText: '-END167' }).waitFor();
    const fontPx = () =>
      page.evaluate(() =>
        Number.parseFloat(getComputedStyle(document.querySelector('.xterm-rows')!).fontSize),
      );
    const widths = () =>
      screen.evaluate((box) => ({
        box: box.clientWidth,
        scroll: box.scrollWidth,
        term: (box.querySelector('.xterm-screen') as HTMLElement).getBoundingClientRect().width,
      }));
    // All 167 columns on screen at a readable size, no sideways scrolling.
    await waitFor(async () => {
      const w = await widths();
      return w.term <= w.box ? w : undefined;
    }, 'the terminal to fit the width');
    expect(await fontPx()).toBeGreaterThanOrEqual(11);
    await ui.shot(page, 'usability-player-167-1280');

    // Marks: the command typed, the join and the resize, each jumps to its moment.
    const marks = page.getByTestId('timeline-marks').getByRole('button');
    expect(await marks.evaluateAll((bs) => bs.map((b) => b.getAttribute('data-kind')))).toEqual([
      'command',
      'join',
      'resize',
    ]);
    expect(await marks.first().getAttribute('aria-label')).toContain('ls -l');
    await page.getByTestId('first-command').filter({ hasText: 'ls -l' }).waitFor();
    await marks.nth(2).click();
    await screen.locator('.xterm-rows').filter({ hasText: 'after resize' }).waitFor();

    // Full screen: the controls and the terminal.
    await page.getByRole('button', { name: 'Full screen' }).click();
    await waitFor(
      async () =>
        (await page.evaluate(() => document.fullscreenElement?.getAttribute('data-testid'))) ===
        'player-stage',
      'full screen',
    );
    await page.getByRole('button', { name: 'Exit full screen' }).click();
    await waitFor(
      async () => (await page.evaluate(() => document.fullscreenElement)) === null,
      'full screen left',
    );

    // At 800 px the font stops at the minimum and the box scrolls to the last column.
    const narrow = await ui.newPage(tg.port, { width: 800, height: 700 });
    try {
      await signIn(narrow.page, 'admin', PASSWORD);
      await narrow.page.goto('/web/recordings/sess-wide-1');
      const box = narrow.page.getByTestId('player-screen');
      await box.locator('.xterm-rows').filter({ hasText: '-END167' }).waitFor();
      expect(
        await narrow.page.evaluate(() =>
          Number.parseFloat(getComputedStyle(document.querySelector('.xterm-rows')!).fontSize),
        ),
      ).toBe(11);
      const end = await box.evaluate((b) => {
        b.scrollLeft = b.scrollWidth;
        const screen = (b.querySelector('.xterm-screen') as HTMLElement).getBoundingClientRect();
        const r = b.getBoundingClientRect();
        return { scrolls: b.scrollWidth > b.clientWidth, right: screen.right, boxRight: r.right + 1 };
      });
      expect(end.scrolls).toBe(true);
      expect(end.right).toBeLessThanOrEqual(end.boxRight);
      expect(await narrow.page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(800);
      await ui.shot(narrow.page, 'usability-player-167-800');
    } finally {
      await narrow.context.close();
    }
  });

  it('resources: clicking a label adds it as a filter', async () => {
    const { page } = admin;
    await page.goto('/web/resources');
    const info = page.getByTestId('page-info');
    await info.filter({ hasText: '(3 resources)' }).waitFor();
    await page.locator('tr[data-resource="pg-a"]').getByRole('button', { name: 'env=prod' }).click();
    await page.locator('.chip').filter({ hasText: 'env=prod' }).waitFor();
    await info.filter({ hasText: '(2 resources)' }).waitFor();
    expect(await page.locator('tr[data-resource="pg-b"]').count()).toBe(0);
    await ui.shot(page, 'usability-resources-label-filter');
    expect(ui.cspViolations).toEqual([]);
  });
});
