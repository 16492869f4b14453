import { execFile } from 'node:child_process';
import { randomInt, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rdp } from '../../adapter-rdp/src/index.js';
import {
  allStarted,
  startShadow,
  startWeston,
  startXrdp,
  startXvfb,
  type Weston,
} from '../../adapter-rdp/test/peers.js';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import { buildUi, signIn, UiBrowser } from './harness.js';

// A desktop in the browser end to end: Chromium runs the IronRDP wasm client
// from the built UI, the gateway relays RDCleanPath to weston's RDP backend
// (a real RDP server) and logs in with the credential it holds.

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const ROLE = `kind: role
name: desk
allow:
  desktop_labels: { env: '*' }
  desktop_logins: [Administrator, gh-rdp]
deny:
  desktop_labels: { env: prod }
`;

let dist: string;
let dir: string;
let ui: UiBrowser;
let tg: TestGateway;
let weston: Weston;
let xrdp: Awaited<ReturnType<typeof startXrdp>>;
let alice: { context: BrowserContext; page: Page };
type Rgb = [number, number, number];
const randomColor = (): Rgb => [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
const far = (a: Rgb, b: Rgb) => a.some((c, i) => Math.abs(c - b[i]!) > 60);
/** The remote desktop's colour, new each run: a screenshot showing it came from the desktop. */
const color: Rgb = randomColor();
/** freerdp-shadow with NLA required (a Windows host's default) on its own display, and that display's colour. */
let shadowX: { display: string; stop(): Promise<void> };
let shadow: { port: number; stop(): Promise<void> };
const SHADOW_PASSWORD = 'Sh4dow!pw';
const shadowColor: Rgb = randomColor();
/** Colours the player test gives the remote xterm, one after the other, each far from the others. */
const colorsAB: [Rgb, Rgb] = (() => {
  for (;;) {
    const a = randomColor();
    const b = randomColor();
    if (far(a, color) && far(b, color) && far(a, b)) return [a, b];
  }
})();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-web-rdp-'));
  // xrdp's session: an xterm whose keystrokes land in a file, to see typing arrive.
  // Every peer that starts is kept (and stopped in afterAll) even when another fails to start.
  await allStarted([
    buildUi().then((x) => (dist = x)),
    startWeston(dir, color).then((w) => (weston = w)),
    // The shell also runs each typed line: the player test changes the xterm's colour by typing.
    // allowWindowOps: OSC 52 sets and reads the clipboard (the clipboard test's remote side).
    startXrdp(
      dir,
      color,
      "exec xterm -xrm 'XTerm*allowWindowOps: true' -geometry 80x24+0+0 -e sh -c 'tee \"$HOME/typed.txt\" | sh'",
    ).then((x) => (xrdp = x)),
    startXvfb().then((x) => (shadowX = x)),
  ]);
  shadow = await startShadow(dir, shadowX.display, { user: 'Administrator', password: SHADOW_PASSWORD });
  tg = await startGateway({ webDir: dist, clusterName: 'desk.example' });
  tg.gw.use(rdp());
  await tg.gw.ready();
  await tg.gw.admin.putRole(ROLE, { create: true });
  await tg.gw.admin.createUser({ name: 'alice', roles: ['desk'], password: PASSWORD });
  const pin = new X509Certificate(weston.certPem).fingerprint256;
  await tg.gw.admin.addDesktop({
    name: 'dev1',
    addr: `127.0.0.1:${weston.port}`,
    labels: { env: 'dev' },
    tls_fingerprint: pin,
    credentials: [{ login: 'Administrator', password: 'Win-P@ss-1' }],
  });
  await tg.gw.admin.addDesktop({
    name: 'prod1',
    addr: `127.0.0.1:${weston.port}`,
    labels: { env: 'prod' },
    tls_fingerprint: pin,
  });
  await tg.gw.admin.addDesktop({
    name: 'xrdp1',
    addr: `127.0.0.1:${xrdp.port}`,
    labels: { env: 'dev' },
    insecure_skip_verify: true,
    credentials: [{ login: xrdp.user, password: xrdp.password }],
  });
  for (const [name, password] of [
    ['nla1', SHADOW_PASSWORD],
    ['nla-wrong', 'not-the-password'],
  ] as const) {
    await tg.gw.admin.addDesktop({
      name,
      addr: `127.0.0.1:${shadow.port}`,
      labels: { env: 'dev' },
      insecure_skip_verify: true,
      credentials: [{ login: 'Administrator', password }],
    });
  }
  ui = await UiBrowser.launch([{ port: tg.port, caPem: tg.gw.exportCa('x509', { type: 'host' }) }]);
  alice = await ui.newPage(tg.port);
  await signIn(alice.page, 'alice', PASSWORD);
}, 180_000);

afterAll(async () => {
  await alice?.context.close();
  await ui?.close();
  await tg?.close();
  await weston?.stop();
  await xrdp?.stop();
  await shadow?.stop();
  await shadowX?.stop();
  if (dist) await rm(dist, { recursive: true, force: true });
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Pixels of a screenshot of `page` within `tolerance` of `rgb` per channel (ImageMagick decodes the PNG). */
async function pixelsOf(
  page: Page,
  rgb: [number, number, number],
  tolerance = 8,
): Promise<{ match: number; total: number }> {
  const png = path.join(dir, `desktop-${Date.now()}.png`);
  await page.screenshot({ path: png });
  const { stdout } = await run('convert', [png, '-depth', '8', 'rgb:-'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  let match = 0;
  for (let i = 0; i + 2 < stdout.length; i += 3) {
    if (
      Math.abs(stdout[i]! - rgb[0]) <= tolerance &&
      Math.abs(stdout[i + 1]! - rgb[1]) <= tolerance &&
      Math.abs(stdout[i + 2]! - rgb[2]) <= tolerance
    ) {
      match++;
    }
  }
  return { match, total: stdout.length / 3 };
}

async function events(type: string): Promise<Record<string, unknown>[]> {
  return (await tg.gw.audit.search({ types: [type], limit: 1000 })).events as unknown as Record<
    string,
    unknown
  >[];
}

describe('desktops in the web UI', () => {
  it('the Resources page lists the allowed desktop; its tab shows the remote screen; a lock ends it', async () => {
    const { page, context } = alice;
    await page.goto('/web/resources');
    await page.getByRole('tab', { name: /Desktops/ }).click();
    const row = page.locator('tr[data-resource="dev1"]');
    await row.getByRole('button', { name: 'Connect' }).click();
    // prod1 is denied by label for alice: not listed at all.
    await expect(page.locator('tr[data-resource="prod1"]').count()).resolves.toBe(0);
    const [tab] = await Promise.all([
      context.waitForEvent('page'),
      page.getByRole('link', { name: 'Administrator on dev1' }).click(),
    ]);
    await tab.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    // The canvas shows weston's desktop, one colour chosen by this run.
    const seen = await waitFor(
      async () => {
        const px = await pixelsOf(tab, color);
        return px.match > 0.3 * px.total ? px : undefined;
      },
      'the remote screen in the desktop tab',
      60_000,
    );
    await ui.shot(tab, 'desktop-connected');
    expect(seen.match).toBeGreaterThan(0.3 * seen.total);
    const start = await waitFor(
      async () =>
        (await events('desktop.session.start')).find((e) => e.server === 'dev1' && e.success === true),
      'desktop.session.start',
      15_000,
    );
    expect(start).toMatchObject({ user: 'alice', login: 'Administrator', tls_verify: 'fingerprint' });

    await tg.gw.admin.lockUser('alice', { message: 'desktop lock test' });
    await tab.locator('main[data-state="ended"], main[data-state="error"]').waitFor({ timeout: 30_000 });
    const end = await waitFor(
      async () => (await events('desktop.session.end')).find((e) => e.session_id === start.session_id),
      'desktop.session.end',
      15_000,
    );
    expect(String(end.reason)).toMatch(/desktop lock test/);
    expect(Number(end.bytes_out)).toBeGreaterThan(10_000);
    await tg.gw.admin.unlockUser('alice');
    await tab.close();

    // The recording holds only what the desktop sent (never the Client Info PDU with the
    // stored password) and plays back in the same client: the screen shows again.
    const meta = await tg.gw.recordings.get(String(start.session_id));
    expect(meta).toMatchObject({ kind: 'desktop', user: 'alice', server: 'dev1', login: 'Administrator' });
    expect(meta?.ended).toBeDefined();
    const recorded: Buffer[] = [];
    for await (const e of tg.gw.recordings.read(String(start.session_id))) {
      if (e.type === 'output') recorded.push(Buffer.from(e.data));
    }
    const all = Buffer.concat(recorded);
    expect(all.length).toBeGreaterThan(10_000);
    for (const secret of [Buffer.from('Win-P@ss-1', 'utf16le'), Buffer.from('Win-P@ss-1')]) {
      expect(all.includes(secret)).toBe(false);
    }
    await page.goto('/web/recordings');
    const [player] = await Promise.all([
      context.waitForEvent('page'),
      page
        .locator(`tr[data-recording="${String(start.session_id)}"]`)
        .getByRole('link', { name: 'Play' })
        .click(),
    ]);
    await player.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    const replayed = await waitFor(
      async () => {
        const px = await pixelsOf(player, color);
        return px.match > 0.3 * px.total ? px : undefined;
      },
      'the recorded screen in the playback tab',
      60_000,
    );
    await ui.shot(player, 'desktop-playback');
    expect(replayed.match).toBeGreaterThan(0.3 * replayed.total);
    await player.close();
  }, 180_000);

  it('text typed in the desktop tab reaches an xterm on xrdp, logged in by the gateway (no password asked)', async () => {
    const { page } = alice;
    await page.goto(`/web/desktop?name=xrdp1&login=${xrdp.user}`);
    await page.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    // Logged in (not xrdp's login dialog): the session's colour shows.
    await waitFor(
      async () => {
        const px = await pixelsOf(page, color);
        return px.match > 0.1 * px.total ? px : undefined;
      },
      'the xrdp session on screen',
      60_000,
    );
    await page.locator('iron-remote-desktop').click({ position: { x: 100, y: 100 } });
    await page.keyboard.type('hello-rdp 42');
    await page.keyboard.press('Enter');
    const typed = path.join(xrdp.home, 'typed.txt');
    const text = await waitFor(
      async () => {
        const t = await readFile(typed, 'utf8').catch(() => '');
        return t.includes('\n') ? t : undefined;
      },
      'the typed line in the remote xterm',
      30_000,
    );
    await ui.shot(page, 'desktop-xrdp-typed');
    expect(text).toBe('hello-rdp 42\n');
  }, 120_000);

  it('a desktop recording plays from a deep link in the middle, seeks back and plays on; its input is recorded without key identities', async () => {
    const { page } = alice;
    const earlier = new Set((await events('desktop.session.start')).map((e) => e.session_id));
    const hex = (c: Rgb) => c.map((x) => x.toString(16).padStart(2, '0')).join('');
    const shows = (p: Page, c: Rgb, what: string, min = 0.05) =>
      waitFor(
        async () => {
          const px = await pixelsOf(p, c);
          return px.match > min * px.total ? px : undefined;
        },
        what,
        60_000,
      );
    const gone = (p: Page, c: Rgb, what: string) =>
      waitFor(
        async () => {
          const px = await pixelsOf(p, c);
          return px.match < 0.005 * px.total ? px : undefined;
        },
        what,
        60_000,
      );
    await page.goto(`/web/desktop?name=xrdp1&login=${xrdp.user}`);
    await page.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    await shows(page, color, 'the xrdp session on screen', 0.1).catch(async (e) => {
      await ui.shot(page, 'desktop-player-xrdp-not-on-screen');
      throw e;
    });
    await page.locator('iron-remote-desktop').click({ position: { x: 100, y: 100 } });
    // Typed into the remote xterm's shell: OSC 11 sets the xterm's background colour. Only
    // unshifted keys (the keyboard's type() does not press Shift): '#' is written \043.
    const [a, b] = colorsAB;
    const command = (c: Rgb) => `printf '\\033]11;\\043${hex(c)}\\007'`;
    await page.keyboard.type(command(a));
    await page.keyboard.press('Enter');
    await shows(page, a, 'colour A in the live xterm');
    // A pause between the two commands: a moment that shows A and not yet B.
    await new Promise((r) => setTimeout(r, 2500));
    await page.keyboard.type(command(b));
    await page.keyboard.press('Enter');
    await shows(page, b, 'colour B in the live xterm');
    const start = await waitFor(
      async () =>
        (await events('desktop.session.start')).find(
          (e) => e.server === 'xrdp1' && e.success === true && !earlier.has(e.session_id),
        ),
      'desktop.session.start',
      15_000,
    );
    const id = String(start.session_id);
    // The bar's keys the browser cannot type itself: recorded by name. The page stays until the
    // live recording has both (leaving at once closed the connection before the client sent the
    // second one, in a full run).
    await page.getByRole('button', { name: 'Ctrl+Alt+Del' }).click();
    await page.getByRole('button', { name: 'Windows key' }).click();
    await waitFor(
      async () => {
        const specials: unknown[] = [];
        for await (const e of tg.gw.recordings.read(id)) {
          if (e.type === 'desktop_input' && e.input.kind === 'key' && e.input.special)
            specials.push(e.input.special);
        }
        return specials.length >= 2 ? specials : undefined;
      },
      'both named keys in the live recording',
      30_000,
    );
    await page.goto('/web/recordings');
    await waitFor(async () => (await tg.gw.recordings.get(id))?.ended, 'the recording to end', 30_000);

    // Input: key presses and clicks, never which key (the typed commands are not in the recording).
    const inputs: { t: number; input: Record<string, unknown> }[] = [];
    for await (const e of tg.gw.recordings.read(id)) {
      if (e.type === 'desktop_input')
        inputs.push({ t: e.t, input: e.input as unknown as Record<string, unknown> });
    }
    const keys = inputs.filter((e) => e.input.kind === 'key');
    const typed = command(a).length + 1;
    expect(keys.length).toBeGreaterThanOrEqual(2 * typed);
    expect(inputs.some((e) => e.input.kind === 'button' && e.input.button === 'left' && e.input.down)).toBe(
      true,
    );
    expect(inputs.filter((e) => e.input.special).map((e) => e.input.special)).toEqual([
      'ctrl+alt+del',
      'windows',
    ]);
    for (const e of inputs) expect(Object.keys(e.input).sort()).not.toContain('code');
    // No text typed ends up in the recording: no string in an input event carries it (the times and
    // coordinates are numbers, and may well contain the digits 033).
    const strings = inputs.flatMap((e) => Object.values(e.input).filter((v) => typeof v === 'string'));
    for (const leak of ['printf', hex(a), '033']) expect(strings.join(' ')).not.toContain(leak);
    // The two typing bursts: the first ends with A's Enter, the second starts 2.5 s later.
    const gapAt = keys.findIndex((k, i) => i > 0 && k.t - keys[i - 1]!.t > 1500);
    expect(gapAt).toBeGreaterThan(0);
    const firstKey = keys[0]!.t;
    const secondBurst = keys[gapAt]!.t;
    const middle = secondBurst - 300;

    // A deep link to the middle opens paused there: A on screen, not B.
    // (The same tab: the web session lives in the tab, a tab opened by the test has none.)
    const player = page;
    await player.goto(`/web/desktop?recording=${encodeURIComponent(id)}&t=${middle}`);
    await player.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    await shows(player, a, 'colour A at the deep link');
    await ui.shot(player, 'desktop-player-deep-link');
    const notB = await pixelsOf(player, b);
    expect(notB.match).toBeLessThan(0.005 * notB.total);
    await expect(player.getByTestId('position').getAttribute('data-t')).resolves.toBe(String(middle));
    await expect(player.getByRole('button', { name: 'Play' }).isVisible()).resolves.toBe(true);

    // Back to the first typing mark: a new client session replays up to it (A not set yet).
    const marks = player.locator('[data-testid="timeline-marks"] [data-kind="keys"]');
    await expect(marks.count()).resolves.toBeGreaterThanOrEqual(2);
    await marks.first().click();
    await expect(player.getByTestId('position').getAttribute('data-t')).resolves.toBe(String(firstKey));
    await gone(player, a, 'colour A gone after seeking back');
    await shows(player, color, 'the session colour after seeking back', 0.1);

    // Play on at 2x with the idle time kept (A stays on screen for over a second): A comes back, then B.
    await player.getByLabel('Speed').selectOption('2');
    await player.getByLabel('Skip idle').uncheck();
    await player.getByRole('button', { name: 'Play' }).click();
    await shows(player, a, 'colour A while playing on');
    await shows(player, b, 'colour B while playing on');
    await ui.shot(player, 'desktop-player-played-on');
    expect(ui.cspViolations, ui.cspViolations.join('\n')).toEqual([]);
  }, 240_000);

  it('clipboard text goes both ways through the relay (the page and an xterm on xrdp)', async () => {
    const { page, context } = alice;
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], {
      origin: `https://localhost:${tg.port}`,
    });
    const toRemote = `local-clip-${randomInt(1e9)}`;
    const fromRemote = `remote-clip-${randomInt(1e9)}`;
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    // Scripts the remote shell runs when their names are typed (the keyboard types no shifted keys):
    // c1 puts text on the remote clipboard, c2 asks the xterm for the clipboard (its answer is
    // typed back into the shell, so it lands in typed.txt).
    await writeFile(path.join(xrdp.home, 'c1'), `printf '\\033]52;c;${b64(fromRemote)}\\007'\n`);
    await writeFile(path.join(xrdp.home, 'c2'), "printf '\\033]52;c;?\\007'\n");
    await page.goto(`/web/desktop?name=xrdp1&login=${xrdp.user}`);
    await page.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    await waitFor(
      async () => {
        const px = await pixelsOf(page, color);
        return px.match > 0.1 * px.total ? px : undefined;
      },
      'the xrdp session on screen',
      60_000,
    ).catch(async (e) => {
      await ui.shot(page, 'desktop-clipboard-no-session');
      throw e;
    });
    await page.locator('iron-remote-desktop').click({ position: { x: 100, y: 100 } });
    // Local to remote: the client offers the page's clipboard; the xterm's answer is typed.txt's.
    // Each try puts a new text on the page's clipboard (a change the client's monitor sees), in case
    // an earlier change came while the monitor was busy: a run alone missed the first one.
    const offered: string[] = [];
    const typed = path.join(xrdp.home, 'typed.txt');
    await waitFor(
      async () => {
        const text = `${toRemote}-${offered.length}`;
        offered.push(text);
        await page.evaluate((t) => navigator.clipboard.writeText(t), text);
        await new Promise((r) => setTimeout(r, 1000));
        await page.keyboard.type('sh c2');
        await page.keyboard.press('Enter');
        await new Promise((r) => setTimeout(r, 1000));
        await page.keyboard.press('Enter');
        const t = await readFile(typed, 'utf8');
        return offered.some((o) => t.includes(`52;c;${b64(o)}`)) ? t : undefined;
      },
      'the page clipboard on the remote desktop',
      60_000,
    );

    // Remote to local: the xterm sets the remote clipboard; the page's clipboard gets it. Each try
    // sets it again (a new selection owner), in case the desktop's clipboard announcement came
    // while the page's own clipboard monitor was busy.
    await waitFor(
      async () => {
        await page.keyboard.type('sh c1');
        await page.keyboard.press('Enter');
        await new Promise((r) => setTimeout(r, 1000));
        return (await page.evaluate(() => navigator.clipboard.readText())) === fromRemote ? true : undefined;
      },
      'the remote clipboard in the page',
      30_000,
    );
    // The tests after this one run without clipboard access, as before it.
    await context.clearPermissions();
  }, 180_000);

  it('a denied desktop is refused in the tab and audited', async () => {
    const { page } = alice;
    await page.goto('/web/desktop?name=prod1&login=Administrator');
    await page.locator('main[data-state="error"]').waitFor({ timeout: 60_000 });
    await ui.shot(page, 'desktop-denied');
    await expect(page.getByTestId('desktop-status').textContent()).resolves.toMatch(
      /could not be opened|denied/,
    );
    await expect(page.getByRole('alert').first().textContent()).resolves.toMatch(/denied/);
    const denied = (await events('access.denied')).find((e) => e.resource === 'prod1' && e.user === 'alice');
    expect(denied).toBeDefined();
    expect(ui.cspViolations, ui.cspViolations.join('\n')).toEqual([]);
  });

  it('an NLA-only desktop: the gateway logs in with CredSSP and the stored credential; the tab shows the remote screen', async () => {
    const { page } = alice;
    await page.goto('/web/desktop?name=nla1&login=Administrator');
    await page.locator('main[data-state="connected"]').waitFor({ timeout: 60_000 });
    // The shadow server sends what changes on its display: paint it while waiting.
    const hex = shadowColor.map((c) => c.toString(16).padStart(2, '0')).join('');
    const seen = await waitFor(
      async () => {
        await run('xsetroot', ['-solid', `#${hex}`], { env: { ...process.env, DISPLAY: shadowX.display } });
        const px = await pixelsOf(page, shadowColor);
        return px.match > 0.3 * px.total ? px : undefined;
      },
      'the NLA desktop on screen',
      60_000,
    );
    await ui.shot(page, 'desktop-nla');
    expect(seen.match).toBeGreaterThan(0.3 * seen.total);
    const start = (await events('desktop.session.start')).find(
      (e) => e.server === 'nla1' && e.success === true,
    );
    expect(start).toMatchObject({ user: 'alice', login: 'Administrator', security: 'hybrid' });
  }, 120_000);

  it('an NLA-only desktop whose stored password is wrong: the tab shows an error, the refusal is audited with the fix', async () => {
    const { page } = alice;
    await page.goto('/web/desktop?name=nla-wrong&login=Administrator');
    await page.locator('main[data-state="error"]').waitFor({ timeout: 60_000 });
    await ui.shot(page, 'desktop-nla-wrong-password');
    await expect(page.getByTestId('desktop-status').textContent()).resolves.toMatch(/password stored for it/);
    const failed = await waitFor(
      async () =>
        (await events('desktop.session.start')).find((e) => e.server === 'nla-wrong' && e.success === false),
      'the failed desktop.session.start',
      15_000,
    );
    expect(String(failed.error)).toMatch(/refused the stored credential .*--password-file/);
  }, 120_000);
});
