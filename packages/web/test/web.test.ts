import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileRecordingStore } from '@gatehouse/audit';
import { GatehouseClient, ManualClock } from '@gatehouse/core';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../core/test/helpers.js';
import { buildUi, searchAuditLog, signIn, totpNow, typeRole, UiBrowser } from './harness.js';

// Browser end-to-end tests: the real gateway (TLS listener, API, web UI served
// by core) driven by Debian's Chromium through playwright-core. One browser
// for the whole file; each describe block gets its own gateway.

const ADMIN_PASSWORD = 'correct horse battery staple';

let dist: string;
let ui: UiBrowser;
let plain: TestGateway;
let otp: TestGateway;
const clock = new ManualClock(Date.now());
/** Recordings in the password-login gateway are written on this clock, so their gaps are exact. */
const recClock = new ManualClock(Date.UTC(2026, 4, 1, 9, 30, 0));
let recDir: string;

beforeAll(async () => {
  dist = await buildUi();
  recDir = await mkdtemp(path.join(os.tmpdir(), 'gh-web-rec-'));
  plain = await startGateway({
    webDir: dist,
    clusterName: 'plain.example',
    recordings: new FileRecordingStore({ dir: recDir, clock: () => recClock.now(), flushMs: 50 }),
  });
  otp = await startGateway({
    webDir: dist,
    clusterName: 'otp.example',
    secondFactor: 'otp',
    clock,
    // The limiter refills with the manual clock, which moves only when a test moves it.
    values: { auth: { login_rate_per_minute: 1000 } },
  });
  ui = await UiBrowser.launch(
    [plain, otp].map((g) => ({ port: g.port, caPem: g.gw.exportCa('x509', { type: 'host' }) })),
  );
}, 120_000);

afterAll(async () => {
  await ui?.close();
  await plain?.close();
  await otp?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
  if (recDir) await rm(recDir, { recursive: true, force: true });
});

const newPage = (gw: TestGateway) => ui.newPage(gw.port);
const shot = (page: Page, name: string) => ui.shot(page, name);

describe('web UI with password login (second factor off)', () => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    await plain.gw.admin.createUser({
      name: 'admin',
      roles: ['admin', 'access'],
      traits: { logins: ['ubuntu'] },
      password: ADMIN_PASSWORD,
    });
    for (let i = 0; i < 60; i++) {
      await plain.gw.admin.addDatabase({
        name: `pg-${String(i).padStart(3, '0')}`,
        protocol: i % 10 === 9 ? 'mysql' : 'postgres',
        uri: `${i % 10 === 9 ? 'mysql' : 'postgres'}://10.0.0.${i}:5432`,
        labels: { env: i % 2 === 0 ? 'prod' : 'dev', team: i < 30 ? 'payments' : 'search' },
        description: `database number ${i}`,
      });
    }
    await plain.gw.admin.addNode({
      name: 'web-1',
      addr: '127.0.0.1:2222',
      labels: { role: 'web' },
      description: 'the web server',
    });
    ({ context, page } = await newPage(plain));
  });
  afterAll(async () => {
    await context?.close();
  });

  /**
   * The tests share one signed-in page (as a user clicks through the UI), but
   * none needs the one before it to have run: this signs in when no test has.
   */
  async function signedIn(): Promise<void> {
    if (!(await page.getByTestId('current-user').isVisible())) await signIn(page, 'admin', ADMIN_PASSWORD);
  }

  it('serves the UI with a strict CSP and caching headers; /v1 stays the JSON API', async () => {
    const index = await page.goto('/');
    expect(index?.status()).toBe(200);
    const h = index!.headers();
    expect(h['content-security-policy']).toContain("default-src 'self'");
    expect(h['content-security-policy']).toContain("script-src 'self'");
    expect(h['content-security-policy']).toContain("frame-ancestors 'none'");
    // The only relaxation: inline <style> elements (xterm.js); scripts are 'self' only.
    expect(h['content-security-policy']).toContain("script-src 'self';");
    expect(h['content-security-policy']!.match(/[a-z-]+ [^;]*unsafe/g)).toEqual([
      "style-src-elem 'self' 'unsafe",
    ]);
    expect(h['x-frame-options']).toBe('DENY');
    expect(h['cache-control']).toBe('no-cache');
    const script = await page.locator('script[type="module"]').getAttribute('src');
    expect(script).toMatch(/^\/assets\/index-[\w-]+\.js$/);
    const asset = await page.goto(script!);
    expect(asset?.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
    const ping = await page.goto('/v1/ping');
    expect(ping?.headers()['content-type']).toContain('application/json');
    expect(JSON.parse((await ping?.text()) ?? '{}').cluster_name).toBe('plain.example');
    // A client-side route is answered with the app, not a 404.
    const deep = await page.goto('/web/audit');
    expect(deep?.status()).toBe(200);
    // Not signed in: the app sends us to the login page.
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/login');
  });

  it('rejects a wrong password with a clear message, then signs in with a strict session cookie', async () => {
    await page.goto('/web/login');
    await page.getByLabel('User').fill('admin');
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    expect(await alert.getAttribute('data-code')).toBe('GH_ERR_BAD_CREDENTIALS');
    await shot(page, 'login-error');

    await signIn(page, 'admin', ADMIN_PASSWORD);
    const cookie = (await context.cookies()).find((c) => c.name === 'gh_session');
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Strict' });
    // Nothing in localStorage; the CSRF token lives in this tab's sessionStorage.
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    expect(await page.evaluate(() => sessionStorage.getItem('gatehouse.csrf'))).toMatch(/^[\w-]{20,}$/);
    // A state change without the CSRF header is refused even with the cookie.
    const status = await page.evaluate(async () => {
      const r = await fetch('/v1/users', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'mallory', roles: ['admin'] }),
      });
      return r.status;
    });
    expect(status).toBe(403);
  });

  it('shows the cluster view with name, version, address and counts, and searches it', async () => {
    await signedIn();
    await page.goto('/web/cluster');
    const table = page.getByTestId('clusters');
    await table.getByText('plain.example').waitFor();
    const row = table.locator('tbody tr').first();
    // Nodes, databases, Kubernetes clusters.
    await row.getByRole('cell').nth(3).filter({ hasText: /^1$/ }).waitFor();
    await row.getByRole('cell').nth(4).filter({ hasText: '60' }).waitFor();
    expect(await row.getByRole('cell').nth(5).textContent()).toBe('0');
    const ping = (await page.evaluate(() => fetch('/v1/ping').then((r) => r.json()))) as {
      version: string;
      public_addr: string;
    };
    expect(await row.textContent()).toContain(ping.version);
    expect(await row.textContent()).toContain(ping.public_addr);
    await shot(page, 'cluster');
    await page.getByLabel('Search clusters').fill('no-such-cluster');
    await table.getByText('No cluster matches').waitFor();
    await page.getByLabel('Search clusters').fill('plain');
    await table.getByText('plain.example').waitFor();
  });

  it('lists resources with search, label filters, sorting, pages and the connect commands', async () => {
    await signedIn();
    await page.getByRole('link', { name: 'Resources' }).click();
    const info = page.getByTestId('page-info');
    await info.filter({ hasText: '(61 resources)' }).waitFor();
    expect(await info.textContent()).toContain('Page 1 of 3');
    await shot(page, 'resources');

    await page.getByRole('tab', { name: /^Nodes/ }).click();
    await info.filter({ hasText: '(1 resource)' }).waitFor();
    await page.locator('tr[data-resource="web-1"]').getByRole('button', { name: 'Connect' }).click();
    const ssh = await page.locator('tr.detail code').first().textContent();
    expect(ssh).toMatch(/^gatehouse ssh \S+@web-1$/);
    await page.getByRole('tab', { name: /^All/ }).click();

    await page.getByLabel('Label filter').fill('env=prod');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await info.filter({ hasText: '(30 resources)' }).waitFor();
    await page.getByLabel('Label filter').fill('team=search');
    await page.getByRole('button', { name: 'Add filter' }).click();
    await info.filter({ hasText: '(15 resources)' }).waitFor();
    const rows = page.getByTestId('resources').locator('tbody tr[data-resource]');
    const names = await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-resource')));
    expect(names).toHaveLength(15);
    expect(names.every((n) => Number(n!.slice(3)) >= 30 && Number(n!.slice(3)) % 2 === 0)).toBe(true);
    expect(names[0]).toBe('pg-030');

    // Sorting by name twice flips to descending.
    await page.getByRole('button', { name: /^Name/ }).click();
    await rows.first().and(page.locator('[data-resource="pg-058"]')).waitFor();

    await page.getByRole('button', { name: 'Remove filter team=search' }).click();
    await page.getByLabel('Search resources').fill('pg-04');
    await info.filter({ hasText: '(5 resources)' }).waitFor();

    const target = page.locator('tr[data-resource="pg-042"]');
    await target.getByRole('button', { name: 'Connect' }).click();
    const detail = page.locator('tr.detail');
    await detail.getByText('gatehouse db login pg-042').waitFor();
    await detail.getByText('psql "service=pg-042"').waitFor();
    await shot(page, 'resources-connect');

    await page.getByLabel('Search resources').fill('nothing-like-this');
    await page.getByText('No resource matches these filters.').waitFor();
  });

  it('searches the audit log on the server, expands an event, and explains bad dates and empty results', async () => {
    await signedIn();
    // This test's own events, the newest user.login ones: a refused login of admin, then an accepted one.
    const api = new GatehouseClient({ proxy: `127.0.0.1:${plain.port}`, caPem: plain.caPem });
    try {
      await expect(api.login({ user: 'admin', password: 'not the password' })).rejects.toThrow();
      await api.login({ user: 'admin', password: ADMIN_PASSWORD });
    } finally {
      api.close();
    }
    await page.getByRole('link', { name: 'Audit log' }).click();
    const table = page.getByTestId('audit-events');
    await table.waitFor();
    await page.getByLabel('Event type').selectOption('user.login');
    await page.getByLabel('User', { exact: true }).fill('admin');
    // The answer is held back, as a busy gateway would: the unfiltered table drawn
    // first has rows too, and reading rows before this search's answer read those
    // (or none, while it loaded: "expected Set{} to deeply equal Set{'user.login'}").
    const rows = table.locator('tbody tr[data-event-type]');
    const isThisSearch = (q: URLSearchParams) => q.get('types') === 'user.login' && q.get('user') === 'admin';
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    await page.route(
      (url) => url.pathname === '/v1/audit/events' && isThisSearch(url.searchParams),
      async (route) => {
        await held;
        await route.continue();
      },
    );
    const answered = searchAuditLog(page, isThisSearch);
    // Meanwhile the page says it is searching and shows no rows of the search before.
    await page.getByRole('status').filter({ hasText: 'Searching' }).waitFor();
    expect(await rows.count()).toBe(0);
    release();
    await answered;
    await page.unrouteAll();
    await rows.first().waitFor();
    const types = await rows.evaluateAll((trs) => trs.map((t) => t.getAttribute('data-event-type')));
    expect(new Set(types)).toEqual(new Set(['user.login']));
    expect(types.length).toBeGreaterThanOrEqual(2);
    // Details open in the side panel, one event at a time.
    const json = page.getByTestId('event-panel').getByTestId('event-json');
    const details = async (row: number) => {
      const id = await rows.nth(row).getAttribute('data-event-id');
      await rows.nth(row).click();
      await json.filter({ hasText: `"id": "${id}"` }).waitFor();
      return JSON.parse((await json.textContent()) ?? '{}') as Record<string, unknown>;
    };
    const before = await details(1);
    const newest = await details(0);
    expect(newest).toMatchObject({ type: 'user.login', user: 'admin', success: true, code: 'GH1000I' });
    expect(before).toMatchObject({ type: 'user.login', user: 'admin', success: false, code: 'GH1001W' });
    await shot(page, 'audit');

    await page.getByLabel('From').fill('last tuesday');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('alert').filter({ hasText: '"last tuesday" is not a date' }).waitFor();

    await page.getByLabel('From').fill('');
    await page.getByLabel('Text').fill('zzzz-no-such-text');
    await searchAuditLog(page, (q) => q.get('q') === 'zzzz-no-such-text');
    await page.getByTestId('audit-empty').waitFor();
  });

  it('creates a user with an invite link that another browser accepts', async () => {
    await signedIn();
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByTestId('users').getByText('admin', { exact: true }).waitFor();
    await page.getByLabel('Name').fill('carol');
    await page.getByLabel('Roles').fill('access');
    await page.getByLabel('SSH logins').fill('carol');
    await page.getByRole('button', { name: 'Add user' }).click();
    const invite = page.getByTestId('invite');
    await invite.waitFor();
    const link = (await invite.locator('code').first().textContent()) ?? '';
    expect(link).toMatch(new RegExp(`^https://localhost:${plain.port}/web/invite/[\\w-]+$`));
    await page.locator('tr[data-user="carol"]').getByText('invite pending').waitFor();
    await shot(page, 'users');

    const other = await newPage(plain);
    try {
      await other.page.goto(link);
      await other.page.getByTestId('invite-user').filter({ hasText: 'carol' }).waitFor();
      await other.page.getByLabel('New password').fill('carols password 123');
      await other.page.getByLabel('The same password again').fill('carols password 124');
      await other.page.getByRole('button', { name: 'Set password' }).click();
      await other.page.getByRole('alert').filter({ hasText: 'two passwords differ' }).waitFor();
      await other.page.getByLabel('The same password again').fill('carols password 123');
      await other.page.getByRole('button', { name: 'Set password' }).click();
      await other.page.getByText('Your password is set').waitFor();
      await signIn(other.page, 'carol', 'carols password 123');
    } finally {
      await other.context.close();
    }
    await page.reload();
    await page.locator('tr[data-user="carol"] td').nth(3).filter({ hasText: 'set' }).waitFor();

    // Lock and unlock from the list.
    await page.locator('tr[data-user="carol"]').getByRole('button', { name: 'Lock' }).click();
    await page.locator('tr[data-user="carol"]').getByText('locked').waitFor();
    await page.locator('tr[data-user="carol"]').getByRole('button', { name: 'Unlock' }).click();
    await page.locator('tr[data-user="carol"]').getByText('active').waitFor();
  });

  it('lints a role as it is typed, pointing at the line of an unknown key, and saves a valid one', async () => {
    await signedIn();
    await page.getByRole('link', { name: 'Roles' }).click();
    await page.getByTestId('roles').getByRole('button', { name: 'access' }).waitFor();
    await page.getByRole('button', { name: 'New role' }).click();
    await typeRole(page, 'kind: role\nname: dev\nallow:\n  loginz: [root]\n');
    const lint = page.getByTestId('lint');
    const msg = lint.locator('li.lint-error').filter({ hasText: 'loginz' });
    await msg.waitFor();
    expect(await msg.textContent()).toContain('Line 4, column 3');
    expect(await msg.textContent()).toContain('logins');
    expect(await page.locator('.cm-lineNumbers .cm-gutterElement.bad').allTextContents()).toEqual(['4']);
    await shot(page, 'roles-lint');

    await page.getByRole('button', { name: 'Create role' }).click();
    await page.getByRole('alert').filter({ hasText: 'invalid role' }).waitFor();

    await typeRole(page, 'kind: role\nname: dev\nallow:\n  logins: [root]\n');
    await lint.getByText(/^No errors/).waitFor();
    await page.getByRole('button', { name: 'Create role' }).click();
    await page.getByText('Role dev created.').waitFor();
    await page.getByTestId('roles').getByRole('button', { name: 'dev' }).waitFor();
    expect((await plain.gw.admin.getRole('dev')).allow.logins).toEqual(['root']);
  });

  it('plays a recording: wall-clock time, idle gaps skipped, speed, ?t= links, search; audit links to it', async () => {
    await signedIn();
    const started = recClock.now();
    const rec = await plain.gw.recordings.create({
      session_id: 'sess-web-1',
      kind: 'kube',
      user: 'admin',
      login: 'root',
      server: 'k-main',
      command: 'sh',
      cols: 80,
      rows: 24,
    });
    const enc = (s: string) => new TextEncoder().encode(s);
    rec.output(enc('$ echo hello\r\n'));
    recClock.advance(1000);
    rec.output(enc('hello\r\n$ '));
    // A minute of nothing: played as 2 s with "skip idle".
    recClock.advance(60_000);
    rec.output(enc('ls /\r\nbin  etc  \x1b[1;34musr\x1b[0m\r\n$ '));
    recClock.advance(500);
    rec.marker('session ended');
    await rec.close();
    await plain.gw.audit.emit({
      type: 'kube.exec.end',
      user: 'admin',
      session_id: 'sess-web-1',
      kube_cluster: 'k-main',
      kube_user: 'admin',
      kube_groups: [],
      command: 'sh',
      duration_ms: 61_500,
    });

    // From the audit log to the player.
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByLabel('Event type').selectOption('kube.exec.end');
    await searchAuditLog(page, (q) => q.get('types') === 'kube.exec.end');
    await page.locator('tbody tr[data-event-type="kube.exec.end"]').first().waitFor();
    expect(
      await page.locator('tbody tr[data-event-type]:not([data-event-type="kube.exec.end"])').count(),
    ).toBe(0);
    await page.getByRole('link', { name: 'Play recording' }).click();
    const terminal = page.getByTestId('terminal');
    await terminal.locator('.xterm-rows').filter({ hasText: 'echo hello' }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/recordings/sess-web-1');
    const wall = page.getByTestId('wallclock');
    const at = async () => Date.parse((await wall.getAttribute('datetime')) ?? '') - started.getTime();
    expect(await at()).toBe(0);
    // 0 + 1 s + 60 s shortened to 2 s + 0.5 s.
    expect(await page.getByTestId('position').textContent()).toBe('0:00 / 0:03');
    expect(await terminal.locator('.xterm-rows').textContent()).not.toContain('bin');
    await shot(page, 'player');

    // Search jumps to the moment the text appeared (escape codes in between are ignored).
    await page.getByLabel('Search the recording').fill('ETC  USR');
    await page.getByRole('button', { name: 'Find' }).click();
    await page.getByTestId('search-status').filter({ hasText: 'Match 1 of 1' }).waitFor();
    await terminal.locator('.xterm-rows').filter({ hasText: 'bin  etc  usr' }).waitFor();
    expect(await at()).toBe(61_000);
    expect(await wall.textContent()).toBe(new Date(started.getTime() + 61_000).toLocaleString('en-US'));

    // A shareable link to a moment: ?t= in recording milliseconds.
    await page.goto('/web/recordings/sess-web-1?t=1000');
    await terminal.locator('.xterm-rows').filter({ hasText: 'hello' }).waitFor();
    expect(await at()).toBe(1000);
    expect(await terminal.locator('.xterm-rows').textContent()).not.toContain('bin');

    // Play at 8x to the end, through the shortened idle gap.
    await page.getByLabel('Speed').selectOption('8');
    await page.getByRole('button', { name: 'Play' }).click();
    await page.getByTestId('position').filter({ hasText: '0:03 / 0:03' }).waitFor();
    await page.getByRole('button', { name: 'Play' }).waitFor();
    expect(await at()).toBe(61_500);
    await terminal.locator('.xterm-rows').filter({ hasText: 'session ended' }).waitFor();

    // A recording that does not exist: a clear message, not a blank page.
    await page.goto('/web/recordings/no-such-session');
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').getAttribute('data-code')).toMatch(
      /^GH_ERR_(NOT_FOUND|ACCESS_DENIED)$/,
    );
  });

  it('marks the commands enhanced recording saw on the player timeline; a marker jumps to its moment', async () => {
    await signedIn();
    // The audit log runs on the real clock: the recording starts now too, so the command lands inside it.
    recClock.set(Date.now());
    const started = recClock.now();
    const rec = await plain.gw.recordings.create({
      session_id: 'sess-web-cmd',
      kind: 'ssh',
      user: 'admin',
      login: 'root',
      server: 'node1',
      command: 'sh',
      cols: 80,
      rows: 24,
    });
    const enc = (s: string) => new TextEncoder().encode(s);
    rec.output(enc('$ cat /etc/hostname\r\n'));
    const command = (session_id: string, argv: string[]) =>
      plain.gw.audit.emit({
        type: 'session.command',
        session_id,
        user: 'admin',
        login: 'root',
        server: 'node1',
        pid: 4242,
        ppid: 1,
        uid: 0,
        program: `/usr/bin/${argv[0]}`,
        argv,
      });
    await command('sess-web-cmd', ['cat', '/etc/hostname']);
    // Another session's command at the same moment is not this recording's.
    await command('sess-web-other', ['other-session']);
    recClock.advance(30_000);
    rec.output(enc('later output\r\n'));
    await rec.close();
    const [event] = (await plain.gw.audit.search({ session_id: 'sess-web-cmd', types: ['session.command'] }))
      .events;
    const at = Date.parse(event?.time ?? '') - started.getTime();
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(30_000);

    await page.goto('/web/recordings/sess-web-cmd?t=30000');
    const terminal = page.getByTestId('terminal');
    await terminal.locator('.xterm-rows').filter({ hasText: 'later output' }).waitFor();
    const markers = page.getByTestId('timeline-marks').locator('[data-kind="exec"]');
    await markers.first().waitFor();
    expect(await markers.count()).toBe(1);
    const marker = page.getByRole('button', { name: /^Program at 0:\d\d: cat \/etc\/hostname$/ });
    await marker.click();
    const wall = page.getByTestId('wallclock');
    await page
      .getByTestId('wallclock')
      .and(page.locator(`[datetime="${new Date(started.getTime() + at).toISOString()}"]`))
      .waitFor();
    expect(Date.parse((await wall.getAttribute('datetime')) ?? '') - started.getTime()).toBe(at);
    expect(await terminal.locator('.xterm-rows').textContent()).not.toContain('later output');
    await shot(page, 'player-commands');
  });

  // A kubectl exec shell: no terminal to join (terminal.test.ts joins SSH sessions), so Watch follows its recording.
  it('lists live sessions, watches one as it is recorded, and terminates it', async () => {
    await signedIn();
    const enc = (x: string) => new TextEncoder().encode(x);
    // Stands in for the Kubernetes adapter's side of an exec session: core
    // authorizes it and binds it to its lifecycle; it ends (recording
    // closed) when core asks.
    const admin = (await plain.gw.users.get('admin'))!;
    const grant = await plain.gw.authorizer.authorize(
      {
        user: 'admin',
        userId: admin.id,
        roles: admin.roles,
        traits: { logins: ['root'] },
        expires: new Date(Date.now() + 3600_000),
      },
      { kind: 'node', name: 'k-main', labels: {}, login: 'root' },
      { remoteAddr: '192.0.2.7' },
    );
    const sid = grant.sessionId;
    const rec = await plain.gw.recordings.create({
      session_id: sid,
      kind: 'kube',
      user: 'admin',
      login: 'root',
      server: 'k-main',
      command: 'sh',
      cols: 80,
      rows: 24,
    });
    const terminated: string[] = [];
    plain.gw.liveSessions.bind(
      grant,
      {
        kind: 'kube',
        protocol: 'kube-exec',
        login: 'root',
        server: 'k-main',
        command: 'sh',
        remoteAddr: '192.0.2.7',
        interactive: true,
      },
      {
        terminate: (r) => {
          terminated.push(r.message);
          rec.output(enc(`\r\n[ended: ${r.message}]\r\n`));
          void rec.close();
        },
      },
    );
    rec.output(enc('root@k-main:/# uptime\r\n'));

    await page.getByRole('link', { name: 'Sessions' }).click();
    const row = page.locator(`tr[data-session="${sid}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain('root@k-main');
    expect(await row.getByRole('link', { name: 'Join' }).count()).toBe(0);
    expect(await row.textContent()).toContain('192.0.2.7');
    await shot(page, 'sessions');

    // An observer in another browser watches read-only while the session runs.
    const watcher = await newPage(plain);
    try {
      await signIn(watcher.page, 'admin', ADMIN_PASSWORD);
      await watcher.page.goto('/web/sessions');
      await watcher.page.locator(`tr[data-session="${sid}"]`).getByRole('link', { name: 'Watch' }).click();
      await watcher.page.getByTestId('live').waitFor();
      const rows = watcher.page.getByTestId('terminal').locator('.xterm-rows');
      await rows.filter({ hasText: 'uptime' }).waitFor();
      rec.output(enc(' 10:00:00 up 42 days,  load average: 0.01\r\n'));
      await rows.filter({ hasText: 'up 42 days' }).waitFor();
      await shot(watcher.page, 'watch-live');

      await row.getByRole('button', { name: 'Terminate' }).click();
      await row.getByRole('button', { name: 'Really terminate' }).click();
      await page.getByText(`Session ${sid} terminated.`).waitFor();
      await page.getByText('No active sessions on any gateway.').waitFor();
      expect(terminated).toHaveLength(1);
      // The watcher sees the end and the whole recording.
      await watcher.page.getByText('The session has ended').waitFor();
      await rows.filter({ hasText: '[ended:' }).waitFor();
    } finally {
      await watcher.context.close();
    }
  });

  it('signs out to the login page; the old cookie no longer works', async () => {
    await signedIn();
    const before = (await context.cookies()).find((c) => c.name === 'gh_session');
    expect(before?.value).toBeTruthy();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByText('You are signed out.').waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/login');
    const status = await page.evaluate(() => fetch('/v1/whoami').then((r) => r.status));
    expect(status).toBe(401);
  });
});

describe('web UI with TOTP (second factor otp)', () => {
  let context: BrowserContext;
  let page: Page;
  let secret = '';

  beforeAll(async () => {
    ({ context, page } = await newPage(otp));
  });
  afterAll(async () => {
    await context?.close();
  });

  it('the first admin accepts the invite, enrolls TOTP from the QR page, and signs in with a code', async () => {
    const token = await otp.gw.bootstrapAdmin();
    expect(token?.token).toBeTruthy();
    await page.goto(`/web/invite/${token!.token}`);
    await page.getByTestId('invite-user').filter({ hasText: 'admin' }).waitFor();
    const qr = page.getByTestId('totp-qr');
    await qr.waitFor();
    // The QR code was drawn: the canvas has dark pixels.
    const dark = await qr.evaluate((c) => {
      const canvas = c as HTMLCanvasElement;
      const data = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (data[i]! < 64) n++;
      return { n, w: canvas.width };
    });
    expect(dark.w).toBeGreaterThan(100);
    expect(dark.n).toBeGreaterThan(1000);
    secret = (await page.getByTestId('totp-secret').textContent()) ?? '';
    expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
    await shot(page, 'invite-totp');

    await page.getByLabel('New password').fill(ADMIN_PASSWORD);
    await page.getByLabel('The same password again').fill(ADMIN_PASSWORD);
    await page
      .getByLabel('Code from the app')
      .fill('000000' === totpNow(secret, clock.now()) ? '111111' : '000000');
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Code from the app').fill(totpNow(secret, clock.now()));
    await page.getByRole('button', { name: 'Set password' }).click();
    await page.getByText('Your password is set and your authenticator is enrolled').waitFor();

    // The next time step: a code is accepted once only.
    clock.advance(30_000);
    await page.goto('/web/login');
    await page.getByLabel('Authenticator code').waitFor();
    await shot(page, 'login-totp');
    await signIn(page, 'admin', ADMIN_PASSWORD, totpNow(secret, clock.now()));
    await page.getByTestId('clusters').getByText('otp.example').waitFor();
  });

  it('returns to the login page with a message when the session expires', async () => {
    await page.getByRole('link', { name: 'Resources' }).click();
    await page.getByTestId('page-info').waitFor();
    // Past the 12 h web session lifetime.
    clock.advance(13 * 3600_000);
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByText('Your session has expired or was ended. Sign in again.').waitFor();
    const url = new URL(page.url());
    expect(url.pathname).toBe('/web/login');
    expect(url.searchParams.get('next')).toBe('/web/users');
    await shot(page, 'session-expired');
    expect(ui.cspViolations).toEqual([]);
    // Signing in again goes back where the user was.
    clock.advance(30_000);
    await signIn(page, 'admin', ADMIN_PASSWORD, totpNow(secret, clock.now()), { stay: true });
    await page.getByTestId('users').waitFor();
    expect(new URL(page.url()).pathname).toBe('/web/users');
  });
});
