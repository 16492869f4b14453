import { createHash, randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import type { AuditEvent } from '@gatehouse/audit';
import { TEST_LOGIN } from '@gatehouse/core/testing';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ssh } from '../../adapter-ssh/src/index.js';
import { builtinNode } from '../../adapter-ssh/src/node/index.js';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, searchAuditLog, signIn, UiBrowser } from './harness.js';

// The web terminal end to end: a gateway with the SSH adapter and the
// built-in node service (this machine, as in `gatehouse start`), Debian's
// Chromium typing into xterm.js, a real bash as TEST_LOGIN on the other side.

const PASSWORD = 'correct horse battery staple';
const NODE = 'local';

let dist: string;
let ui: UiBrowser;
let tg: TestGateway;
/** alice's first browser tab (the Resources page) and the terminal tab it opened. */
let alice: { context: BrowserContext; page: Page };
let term: Page;
/** A web terminal session that has ended (its recording is complete). */
let exited: string;

beforeAll(async () => {
  dist = await buildUi();
  tg = await startGateway({ webDir: dist, clusterName: 'term.example' });
  tg.gw.use(ssh());
  tg.gw.use(builtinNode({ name: NODE }));
  await tg.gw.ready();
  await tg.gw.admin.createUser({
    name: 'alice',
    roles: ['access'],
    traits: { logins: [TEST_LOGIN] },
    password: PASSWORD,
  });
  // Reads sessions and may join them as an observer only (the built-in auditor role).
  await tg.gw.admin.createUser({ name: 'olga', roles: ['auditor'], password: PASSWORD });
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  alice = await ui.newPage(tg.port);
  await signIn(alice.page, 'alice', PASSWORD);
}, 120_000);

afterAll(async () => {
  await alice?.context.close();
  await ui?.close();
  await tg?.close();
  if (dist) await rm(dist, { recursive: true, force: true });
});

/** The selected tab's pane (the only one on screen). */
const pane = (p: Page) => p.locator('[data-testid="terminal-pane"]:visible');
const screen = (p: Page) => pane(p).locator('.xterm-rows');
const selectedTab = (p: Page) => p.getByRole('tab', { selected: true });

/** Clicks into the visible terminal, so typing goes to it. */
async function focus(p: Page): Promise<void> {
  await pane(p).locator('.xterm-screen').click();
}

/** Waits until the visible terminal shows `text` (xterm renders rows as DOM text). */
async function sees(p: Page, text: string | RegExp): Promise<void> {
  await screen(p).filter({ hasText: text }).waitFor();
}

/** Types a command line into the focused terminal. */
async function run(p: Page, line: string): Promise<void> {
  await p.keyboard.type(line);
  await p.keyboard.press('Enter');
}

async function auditOf(type: string, match: (e: AuditEvent) => boolean): Promise<AuditEvent[]> {
  return waitFor(async () => {
    const { events } = await tg.gw.admin.searchAudit({ types: [type], limit: 200 });
    const hits = events.filter(match);
    return hits.length > 0 ? hits : undefined;
  }, `${type} audit events`);
}

async function tabCount(p: Page): Promise<number> {
  return p.locator('[data-testid="terminal-pane"]').count();
}

/** Waits until the page has `n` terminal tabs (a click or key press only starts the change). */
async function tabsAre(p: Page, n: number): Promise<void> {
  await waitFor(async () => (await tabCount(p)) === n, `${n} terminal tab(s)`);
}

/** Waits until the selected tab is the one Alt+`n` selects. */
async function selectedIs(p: Page, n: number): Promise<void> {
  await selectedTab(p)
    .and(p.locator(`[title="Alt+${n}"]`))
    .waitFor();
}

describe('web terminal on the built-in node', () => {
  it('opens from the Resources page in a new browser tab and shows the output of a typed command', async () => {
    await alice.page.getByRole('link', { name: 'Resources' }).click();
    const row = alice.page.locator(`tr[data-resource="${NODE}"]`);
    await row.getByRole('button', { name: 'Connect' }).click();
    const opened = alice.context.waitForEvent('page');
    await alice.page.getByRole('link', { name: `${TEST_LOGIN}@${NODE}` }).click();
    term = await opened;
    // The new tab inherited this tab's sign-in: no login page in between.
    expect(new URL(term.url()).pathname).toBe('/web/terminal');
    await term.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
    expect(await selectedTab(term).textContent()).toContain(`${TEST_LOGIN}@${NODE}`);
    await focus(term);
    await run(term, 'echo web-$((6*7))');
    await sees(term, 'web-42');
    await ui.shot(term, 'terminal', { fullPage: false });

    // Audited and recorded like an OpenSSH client's session.
    const sessionId = await pane(term).getAttribute('data-session');
    expect(sessionId).toBeTruthy();
    const [start] = await auditOf('session.start', (e) => e.session_id === sessionId);
    expect(start).toMatchObject({ user: 'alice', login: TEST_LOGIN, server: NODE });
    const rec = (await tg.gw.recordings.list()).find((r) => r.session_id === sessionId);
    expect(rec).toMatchObject({ user: 'alice', login: TEST_LOGIN, server: NODE });
  });

  it('the pty follows the browser window size', async () => {
    await run(term, 'echo size=$(stty size | tr " " x)');
    await sees(term, /size=\d+x\d+/);
    const before = /size=(\d+)x(\d+)/.exec((await screen(term).textContent()) ?? '')!;
    await term.setViewportSize({ width: 900, height: 600 });
    await run(term, 'clear; echo resized=$(stty size | tr " " x)');
    await sees(term, /resized=\d+x\d+/);
    const after = /resized=(\d+)x(\d+)/.exec((await screen(term).textContent()) ?? '')!;
    // stty prints rows then columns; both shrink with the window.
    expect(Number(after[1])).toBeLessThan(Number(before[1]));
    expect(Number(after[2])).toBeLessThan(Number(before[2]));
    await term.setViewportSize({ width: 1280, height: 860 });
  });

  it('opens a second tab from "+" and switches with Alt+1 / Alt+2, also with a terminal focused', async () => {
    await term.getByRole('tab', { name: 'New tab' }).click();
    await term.getByRole('button', { name: 'Open terminal' }).click();
    await term.locator('[data-testid="terminal-pane"][data-state="live"]').nth(1).waitFor();
    // Type once the shell prompts: keys typed earlier are echoed by the tty around the prompt ("ex$ it 3").
    await sees(term, '$');
    await tabsAre(term, 2);
    await selectedIs(term, 2);
    await run(term, 'echo second-$((1+1))');
    await sees(term, 'second-2');
    // Two shells of the same login on the same node: the second tab is numbered.
    expect(await term.getByRole('tab').filter({ hasNotText: '+' }).allTextContents()).toEqual([
      `${TEST_LOGIN}@${NODE}`,
      `${TEST_LOGIN}@${NODE} (2)`,
    ]);

    await term.keyboard.press('Alt+1');
    await selectedIs(term, 1);
    await sees(term, 'resized=');
    expect(await screen(term).textContent()).not.toContain('second-2');
    // Had Alt+1 reached the shell (TEST_LOGIN's is sh) as ESC 1, the line would start with those bytes and fail.
    await run(term, 'echo alt-$((3+3))');
    await sees(term, 'alt-6');
    expect(await screen(term).textContent()).not.toContain('command not found');

    await term.keyboard.press('Alt+2');
    await selectedIs(term, 2);
    await sees(term, 'second-2');
    await ui.shot(term, 'terminal-tabs', { fullPage: false });
  });

  it('closes a tab whose shell exits cleanly; a failing exit stays with its status', async () => {
    // Tab 2 is selected.
    await run(term, 'exit');
    await term
      .getByTestId('term-notice')
      .filter({ hasText: 'The shell exited. Its tab was closed.' })
      .waitFor();
    await tabsAre(term, 1);
    await selectedIs(term, 1);

    await term.getByRole('tab', { name: 'New tab' }).click();
    await term.getByRole('button', { name: 'Open terminal' }).click();
    await term.locator('[data-testid="terminal-pane"][data-state="live"]').nth(1).waitFor();
    // Type once the shell prompts: keys typed earlier are echoed by the tty around the prompt ("ex$ it 3").
    await sees(term, '$');
    exited = (await pane(term).getAttribute('data-session')) ?? '';
    expect(exited).not.toBe('');
    await run(term, 'exit 3');
    await pane(term).getByTestId('term-end').filter({ hasText: 'The shell exited with status 3.' }).waitFor();
    expect(await tabCount(term)).toBe(2);
    await term.getByRole('button', { name: `Close ${TEST_LOGIN}@${NODE} (2)` }).click();
    await tabsAre(term, 1);
  });

  it('finds that session in the audit log and plays its recording with the wall-clock time', async () => {
    const [start] = await auditOf('session.start', (e) => e.session_id === exited);
    const [end] = await auditOf('session.end', (e) => e.session_id === exited);
    // The recording's last chunk is stored as the session ends, not before its session.end event.
    await waitFor(async () => (await tg.gw.recordings.get(exited))?.ended, 'the recording to be complete');
    // The stored recording holds the echo of the last command typed, before the shell exited.
    const chunks: Uint8Array[] = [];
    for await (const e of tg.gw.recordings.read(exited)) if (e.type === 'output') chunks.push(e.data);
    const output = Buffer.concat(chunks).toString('utf8');
    expect(output, JSON.stringify(output)).toContain('exit 3');
    // An auditor reads the audit log and recordings (alice's access role does not).
    const auditor = await ui.newPage(tg.port);
    try {
      await signIn(auditor.page, 'olga', PASSWORD);
      await playExited(auditor.page, start!.time, end!.time);
    } finally {
      await auditor.context.close();
    }
  });

  async function playExited(page: Page, startTime: string, endTime: string): Promise<void> {
    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByLabel('Event type').selectOption('session.end');
    await page.getByLabel('User', { exact: true }).fill('alice');
    // The unfiltered page drawn first links the recording too (from session.start): wait for this search.
    await searchAuditLog(page, (q) => q.get('types') === 'session.end' && q.get('user') === 'alice');
    const play = page.locator(`a[href="/web/recordings/${encodeURIComponent(exited)}"]`);
    await play.waitFor();
    expect(await play.count()).toBe(1);
    await play.click();
    // Search jumps to the moment the command was typed; the wall clock shows when that was.
    await page.getByLabel('Search the recording').fill('exit 3');
    await page.getByRole('button', { name: 'Find' }).click();
    await page.getByTestId('search-status').filter({ hasText: 'Match 1 of' }).waitFor();
    await page.getByTestId('terminal').locator('.xterm-rows').filter({ hasText: 'exit 3' }).waitFor();
    const wall = page.getByTestId('wallclock');
    const at = Date.parse((await wall.getAttribute('datetime')) ?? '');
    // Recording and audit use whole-millisecond clocks of the same process; allow their rounding.
    expect(at).toBeGreaterThanOrEqual(Date.parse(startTime) - 1000);
    expect(at).toBeLessThanOrEqual(Date.parse(endTime) + 1000);
    expect(await wall.textContent()).toBe(new Date(at).toLocaleString('en-US'));
    await ui.shot(page, 'terminal-recording');
  }

  it('uploads a file and downloads it back, both audited like SFTP', async () => {
    const name = `web-upload-${randomBytes(4).toString('hex')}.bin`;
    // Every byte value, zeros included, and more than one chunk.
    const bytes = randomBytes(300 * 1024);
    const sha = createHash('sha256').update(bytes).digest('hex');
    await pane(term).getByRole('button', { name: 'Files' }).click();
    const files = pane(term).getByTestId('files');
    await files
      .getByLabel('File to upload')
      .setInputFiles({ name, mimeType: 'application/octet-stream', buffer: bytes });
    expect(await files.getByLabel('Upload to path').inputValue()).toBe(name);
    await files.getByRole('button', { name: 'Upload', exact: true }).click();
    await files.getByText(`Uploaded ${name} to ${name} on ${NODE} (300.0 KiB).`).waitFor();

    // The shell sees the same bytes in the login's home directory.
    await focus(term);
    await run(term, `clear; sha256sum ~/${name}`);
    await sees(term, sha);

    await files.getByLabel('Path to download').fill(name);
    const download = term.waitForEvent('download');
    await files.getByRole('button', { name: 'Download' }).click();
    const d = await download;
    expect(d.suggestedFilename()).toBe(name);
    expect((await readFile(await d.path())).equals(bytes)).toBe(true);
    await files.getByText(`Downloaded ${name} from ${NODE} (300.0 KiB).`).waitFor();
    await ui.shot(term, 'terminal-files', { fullPage: false });

    const sftp = await auditOf('sftp', (e) => (e as { path?: string }).path?.endsWith(name) === true);
    const actions = sftp.map((e) => ({ user: e.user, action: (e as { action?: string }).action }));
    expect(actions).toEqual(
      expect.arrayContaining([
        { user: 'alice', action: 'write' },
        { user: 'alice', action: 'read' },
      ]),
    );

    // A file that is not there: the reason, not a silent failure.
    await files.getByLabel('Path to download').fill(`no-such-${name}`);
    await files.getByRole('button', { name: 'Download' }).click();
    await files.getByRole('alert').waitFor();
    expect(await files.textContent()).toContain(`Could not download no-such-${name}`);

    await focus(term);
    await run(term, `rm ~/${name}; echo removed-$((2*5))`);
    await sees(term, 'removed-10');
    await pane(term).getByRole('button', { name: 'Files' }).click();
  });

  it('another user joins the session as an observer: sees new output live and cannot type', async () => {
    const sessionId = (await pane(term).getAttribute('data-session'))!;
    const olga = await ui.newPage(tg.port);
    try {
      await signIn(olga.page, 'olga', PASSWORD);
      await olga.page.getByRole('link', { name: 'Sessions' }).click();
      const row = olga.page.locator(`tr[data-session="${sessionId}"]`);
      await row.waitFor();
      // The auditor role grants observer, not peer.
      await row.getByRole('link', { name: 'Join', exact: true }).waitFor();
      expect(await row.getByRole('link', { name: 'Join as peer' }).count()).toBe(0);
      const opened = olga.context.waitForEvent('page');
      await row.getByRole('link', { name: 'Join', exact: true }).click();
      const watch = await opened;
      await watch.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
      await pane(watch).getByText('Read-only').waitFor();
      await watch
        .getByRole('tab', { selected: true })
        .filter({ hasText: `watch alice: ${TEST_LOGIN}@${NODE}` })
        .waitFor();

      await focus(term);
      await run(term, 'echo shared-$((5*5))');
      await sees(watch, 'shared-25');

      // Typing in the observer's terminal goes nowhere: the page sends nothing...
      await focus(watch);
      await run(watch, 'echo from-observer-$((9*9))');
      // ...and the gateway drops what an observer's socket sends anyway.
      await watch.evaluate(
        (id) =>
          new Promise<void>((resolve, reject) => {
            const ws = new WebSocket(`wss://${location.host}/v1/ws/sessions/${id}/join?mode=observer`);
            ws.binaryType = 'arraybuffer';
            ws.onmessage = (ev) => {
              if (typeof ev.data === 'string' && JSON.parse(ev.data).type === 'session') {
                ws.send(new TextEncoder().encode('echo raw-observer-$((8*8))\r'));
                setTimeout(() => {
                  ws.close();
                  resolve();
                }, 300);
              }
            };
            ws.onclose = (ev) => reject(new Error(`join closed early: ${ev.code}`));
          }),
        sessionId,
      );
      await run(term, 'echo owner-again-$((3*7))');
      await sees(term, 'owner-again-21');
      await sees(watch, 'owner-again-21');
      const owner = (await screen(term).textContent()) ?? '';
      expect(owner).not.toContain('from-observer');
      expect(owner).not.toContain('raw-observer');
      await ui.shot(watch, 'terminal-observer', { fullPage: false });

      const joins = await auditOf('session.join', (e) => e.user === 'olga');
      expect(joins[0]).toMatchObject({
        success: true,
        session_id: sessionId,
        owner: 'alice',
        mode: 'observer',
      });

      // The owner's session is ended by an admin: both sides say why.
      await tg.gw.admin.killSession(sessionId);
      await pane(term).getByTestId('term-end').filter({ hasText: 'Session ended: ended by' }).waitFor();
      await pane(watch).getByTestId('term-end').filter({ hasText: 'Session ended: ended by' }).waitFor();
      await ui.shot(term, 'terminal-killed', { fullPage: false });
      await watch.close();
    } finally {
      await olga.context.close();
    }
  });

  it('the owner joins their own session as a peer from the Sessions page and types into it', async () => {
    await pane(term).getByRole('button', { name: 'Open again' }).click();
    await term.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
    const sessionId = (await pane(term).getAttribute('data-session'))!;
    await alice.page.getByRole('link', { name: 'Sessions' }).click();
    const opened = alice.context.waitForEvent('page');
    await alice.page
      .locator(`tr[data-session="${sessionId}"]`)
      .getByRole('link', { name: 'Join as peer' })
      .click();
    const peer = await opened;
    await peer.locator('[data-testid="terminal-pane"][data-state="live"]').waitFor();
    await pane(peer).getByText('Peer', { exact: true }).waitFor();
    await focus(peer);
    await run(peer, 'echo peer-$((4*4))');
    await sees(term, 'peer-16');
    await sees(peer, 'peer-16');
    // The owner's clean exit ends the peer's view with a message, not a silently closed tab.
    await focus(term);
    await run(term, 'exit');
    await pane(peer).getByTestId('term-end').filter({ hasText: 'its shell exited' }).waitFor();
    await peer.close();
  });

  it('a login the roles do not allow is refused with a visible reason, never a blank tab', async () => {
    // The same browser tab (its sessionStorage holds the sign-in).
    await term.goto(`/web/terminal?node=${NODE}&login=root`);
    const end = pane(term).getByTestId('term-end');
    await end.waitFor();
    await ui.shot(term, 'terminal-refused', { fullPage: false });
    expect(await end.textContent()).toContain('no role allows login "root" on node "local"');
    expect(await end.getAttribute('data-code')).toBe('GH_ERR_ACCESS_DENIED');
    // A refused upgrade (no such session) reaches the page only as a failed socket: still a message.
    await term.goto('/web/terminal?join=no-such-session');
    await pane(term).getByTestId('term-end').filter({ hasText: 'The gateway refused' }).waitFor();
    expect(ui.cspViolations).toEqual([]);
  });
});
