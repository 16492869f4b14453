import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomInt, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  allStarted,
  countColor,
  startShadow,
  startWeston,
  startXvfb,
  type Weston,
} from '../../adapter-rdp/test/peers.js';
import { admin, auditEvents, BIN, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

describe('gatehouse desktops add / ls / connect (xfreerdp through the daemon)', () => {
  let d: Daemon;
  let dir: string;
  let weston: Weston;
  let xvfb: { display: string; stop(): Promise<void> };
  let connect: ChildProcess | undefined;
  const color: [number, number, number] = [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
  /** freerdp-shadow with NLA required (a Windows host's default) on its own display, in its own colour. */
  let shadowX: { display: string; stop(): Promise<void> };
  let shadow: { port: number; stop(): Promise<void> };
  const shadowColor: [number, number, number] = [randomInt(40, 200), randomInt(40, 200), randomInt(40, 200)];
  const homes = { alice: '' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-desk-cli-'));
    // Every peer that starts is kept (and stopped in afterAll) even when another fails to start.
    await allStarted([
      startWeston(dir, color).then((w) => (weston = w)),
      startXvfb().then((x) => (xvfb = x)),
      startDaemon({ cluster: 'dsk' }).then((x) => (d = x)),
      startXvfb().then((x) => (shadowX = x)),
    ]);
    shadow = await startShadow(dir, shadowX.display, { user: 'Administrator', password: 'Sh4dow!pw' });
    homes.alice = join(d.root, 'home-alice');
    await admin(
      d,
      [
        'users',
        'add',
        'alice',
        '--roles',
        'access',
        '--traits',
        'desktop_logins=Administrator',
        '--password-stdin',
      ],
      `${PASSWORD}\n`,
    );
    const l = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin'],
      {
        env: { GATEHOUSE_HOME: homes.alice },
        input: `${PASSWORD}\n`,
      },
    );
    expect(l.code, l.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    connect?.kill('SIGKILL');
    await d?.stop();
    await shadow?.stop();
    await shadowX?.stop();
    await xvfb?.stop();
    await weston?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an admin registers a desktop with a pinned certificate and a password file; nobody sees the password', async () => {
    const pw = join(dir, 'win.pw');
    writeFileSync(pw, 'Win-P@ss-1\n', { mode: 0o600 });
    const fp = new X509Certificate(weston.certPem).fingerprint256;
    const add = await admin(d, [
      'desktops',
      'add',
      'win1',
      '--addr',
      `127.0.0.1:${weston.port}`,
      '--label',
      'env=dev',
      '--fingerprint',
      fp,
      '--login',
      'Administrator',
      '--password-file',
      pw,
    ]);
    expect(add.stdout).toContain('Desktop win1 added');
    const all = JSON.parse((await admin(d, ['desktops', 'ls', '--json'])).stdout);
    expect(all).toEqual([
      expect.objectContaining({
        name: 'win1',
        labels: { env: 'dev' },
        tls_verify: 'fingerprint',
        logins: ['Administrator'],
      }),
    ]);
    const mine = await run(['desktops', 'ls', '--json'], { env: { GATEHOUSE_HOME: homes.alice } });
    expect(mine.code, mine.stderr).toBe(0);
    expect(JSON.parse(mine.stdout)[0].allowed).toEqual({ logins: ['Administrator'] });
    expect(`${add.stdout}${mine.stdout}`).not.toContain('Win-P@ss-1');
    const table = await run(['desktops', 'ls'], { env: { GATEHOUSE_HOME: homes.alice } });
    expect(table.stdout).toMatch(/win1\s+127\.0\.0\.1:\d+\s+env=dev\s+fingerprint\s+Administrator/);
  });

  it('refuses a desktop without a way to trust it, and --login without --password-file', async () => {
    const bare = await run(['--config', d.configFile, 'desktops', 'add', 'bare', '--addr', 'h:3389']);
    expect(bare.code).not.toBe(0);
    expect(bare.stderr).toMatch(/no way to trust its TLS certificate/);
    expect(bare.stderr).toMatch(/--fingerprint/);
    const half = await run([
      '--config',
      d.configFile,
      'desktops',
      'add',
      'half',
      '--addr',
      'h',
      '--insecure-skip-verify',
      '--login',
      'x',
    ]);
    expect(half.code).toBe(2);
    expect(half.stderr).toMatch(/--login and --password-file go together/);
  });

  it('desktops connect starts xfreerdp on a local port: the remote screen shows, no Windows password typed', async () => {
    connect = spawn(process.execPath, [BIN, 'desktops', 'connect', 'win1', '--login', 'Administrator'], {
      env: { ...process.env, GATEHOUSE_HOME: homes.alice, DISPLAY: xvfb.display },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    connect.stdout!.on('data', (b: Buffer) => (out += b));
    connect.stderr!.on('data', (b: Buffer) => (out += b));
    // xfreerdp's default window is 1024x768 on a 1024x768 screen: most of it shows the desktop's colour.
    const deadline = Date.now() + 45_000;
    let seen = 0;
    while (Date.now() < deadline && seen < 0.5 * 1024 * 768) {
      if (connect.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 300));
      seen = await countColor(xvfb.display, dir, color);
    }
    expect(seen, out).toBeGreaterThan(0.5 * 1024 * 768);
    const start = auditEvents(d).find(
      (e) => e.type === 'desktop.session.start' && 'success' in e && e.success,
    );
    expect(start).toMatchObject({
      user: 'alice',
      server: 'win1',
      login: 'Administrator',
      tls_verify: 'fingerprint',
    });
    // Ending the command ends its xfreerdp too, and the gateway audits the session's end.
    connect.kill('SIGTERM');
    await new Promise((r) => connect!.once('exit', r));
    const deadline2 = Date.now() + 15_000;
    while (Date.now() < deadline2 && !auditEvents(d).some((e) => e.type === 'desktop.session.end')) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const end = auditEvents(d).find((e) => e.type === 'desktop.session.end');
    expect(end).toMatchObject({ server: 'win1', reason: 'client_closed' });
  });

  it('desktops connect to an NLA-only desktop: the gateway runs CredSSP with the stored password, xfreerdp shows the screen, nobody typed it', async () => {
    const pw = join(dir, 'nla.pw');
    writeFileSync(pw, 'Sh4dow!pw\n', { mode: 0o600 });
    const add = await admin(d, [
      'desktops',
      'add',
      'nla1',
      '--addr',
      `127.0.0.1:${shadow.port}`,
      '--label',
      'env=dev',
      '--insecure-skip-verify',
      '--login',
      'Administrator',
      '--password-file',
      pw,
    ]);
    expect(add.stdout).toContain('Desktop nla1 added');
    connect = spawn(process.execPath, [BIN, 'desktops', 'connect', 'nla1', '--login', 'Administrator'], {
      env: { ...process.env, GATEHOUSE_HOME: homes.alice, DISPLAY: xvfb.display },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    connect.stdout!.on('data', (b: Buffer) => (out += b));
    connect.stderr!.on('data', (b: Buffer) => (out += b));
    const hex = shadowColor.map((c) => c.toString(16).padStart(2, '0')).join('');
    const deadline = Date.now() + 45_000;
    let seen = 0;
    while (Date.now() < deadline && seen < 0.5 * 1024 * 768) {
      if (connect.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 300));
      // The shadow server sends what changes on its display: paint it while waiting.
      await promisify(execFile)('xsetroot', ['-solid', `#${hex}`], {
        env: { ...process.env, DISPLAY: shadowX.display },
      });
      seen = await countColor(xvfb.display, dir, shadowColor);
    }
    expect(seen, out).toBeGreaterThan(0.5 * 1024 * 768);
    expect(
      auditEvents(d).find(
        (e) => e.type === 'desktop.session.start' && e.server === 'nla1' && 'success' in e && e.success,
      ),
    ).toMatchObject({ user: 'alice', login: 'Administrator', security: 'hybrid', tls_verify: 'skipped' });
    connect.kill('SIGTERM');
    await new Promise((r) => connect!.once('exit', r));
  });

  it('a desktop the roles do not allow is refused before any client starts', async () => {
    const r = await run(['desktops', 'connect', 'win1', '--login', 'root', '--no-launch'], {
      env: { GATEHOUSE_HOME: homes.alice },
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/access denied/i);
  });
});
