import { execFile, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FileRecordingStore, type SessionRecorder } from '@gatehouse/audit';
import { createGateway, loadConfig } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditEvents, BIN, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

const execFileP = promisify(execFile);

/** Runs the built binary and keeps stdout as bytes (recordings are not always valid UTF-8). */
function runBytes(
  args: string[],
  env: NodeJS.ProcessEnv,
  onStdout?: (soFar: Buffer) => void,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    if (!env.GATEHOUSE_DATA_DIR) delete e.GATEHOUSE_DATA_DIR;
    const child = spawn(process.execPath, [BIN, ...args], { env: e, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
      onStdout?.(Buffer.concat(out));
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr });
    });
  });
}

// What the user saw: a prompt, a colored line with "€" split across two reads, a reset, a bad byte.
const ALICE_OUTPUT = [
  Buffer.from('$ '),
  Buffer.from([0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x68, 0x69, 0x20, 0xe2, 0x82]),
  Buffer.from([0xac, 0x1b, 0x5b, 0x30, 0x6d, 0x0d, 0x0a]),
  Buffer.from('exit\r\n'),
];
const ALICE_BYTES = Buffer.concat(ALICE_OUTPUT);

describe('gatehouse recordings ls / play', () => {
  let d: Daemon;
  let store: FileRecordingStore;
  let live: SessionRecorder;
  const homes = { admin: '', alice: '' };
  const as = (who: keyof typeof homes) => ({ GATEHOUSE_HOME: homes[who] });

  beforeAll(async () => {
    d = await startDaemon({ cluster: 'rectest' });
    homes.admin = join(d.root, 'home-admin');
    homes.alice = join(d.root, 'home-alice');
    const a = await run(
      ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
      {
        env: as('admin'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(a.code, a.stderr).toBe(0);
    const l = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'],
      {
        env: as('admin'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(l.code, l.stderr).toBe(0);
    const u = await run(
      ['users', 'add', 'alice', '--roles', 'access', '--logins', 'root', '--password-stdin'],
      {
        env: as('admin'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(u.code, u.stderr).toBe(0);
    const al = await run(
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'alice', '--password-stdin'],
      {
        env: as('alice'),
        input: `${PASSWORD}\n`,
      },
    );
    expect(al.code, al.stderr).toBe(0);

    // Recordings written the way adapters write them: into the daemon's data dir.
    store = new FileRecordingStore({ dir: join(d.dataDir, 'recordings'), flushMs: 20 });
    const mine = await store.create({
      session_id: 'rec-alice-1',
      kind: 'ssh',
      user: 'alice',
      login: 'root',
      server: 'node1',
      cols: 80,
      rows: 24,
    });
    for (const b of ALICE_OUTPUT) {
      mine.output(b);
      await new Promise((r) => setTimeout(r, 30));
    }
    mine.resize(100, 30);
    await mine.close();
    const bobs = await store.create({
      session_id: 'rec-bob-1',
      kind: 'kube',
      user: 'bob',
      server: 'prod',
      cols: 80,
      rows: 24,
    });
    bobs.output(Buffer.from('kubectl says hi\r\n'));
    await bobs.close();
    live = await store.create({
      session_id: 'rec-alice-live',
      kind: 'ssh',
      user: 'alice',
      login: 'root',
      server: 'node2',
      cols: 80,
      rows: 24,
    });
    live.output(Buffer.from('still running\r\n'));
  }, 120_000);

  afterAll(async () => {
    await live?.close();
    await store?.close();
    if (d) expect(await d.stop(), d.err()).toBe(0);
    if (d) rmSync(d.root, { recursive: true, force: true });
  });

  it('lists recordings locally on the data dir, newest first, with "live" for a running one', async () => {
    const r = await run(['--config', d.configFile, 'recordings', 'ls'], { env: as('admin') });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SESSION\s+KIND\s+USER\s+TARGET\s+STARTED\s+DURATION\s+SIZE$/);
    expect(lines[2]).toMatch(/^rec-alice-live\s+ssh\s+alice\s+root@node2\s+\S+\s+live\s+-$/);
    expect(lines[3]).toMatch(/^rec-bob-1\s+kube\s+bob\s+prod\s+\S+\s+0s\s+17 B$/);
    expect(lines[4]).toMatch(/^rec-alice-1\s+ssh\s+alice\s+root@node1\s+\S+\s+\d+s\s+25 B$/);

    const j = await run(['--config', d.configFile, 'recordings', 'ls', '--user', 'alice', '--json'], {
      env: as('admin'),
    });
    expect(j.code, j.stderr).toBe(0);
    const list = JSON.parse(j.stdout) as { session_id: string; ended?: string }[];
    expect(list.map((m) => m.session_id)).toEqual(['rec-alice-live', 'rec-alice-1']);
    expect(list[0]?.ended).toBeUndefined();
  });

  it('plays back locally byte-exactly, with timing and as text', async () => {
    const timed = await runBytes(
      ['--config', d.configFile, 'play', 'rec-alice-1', '--speed', '50'],
      as('admin'),
    );
    expect(timed.code, timed.stderr).toBe(0);
    expect(timed.stdout.equals(ALICE_BYTES)).toBe(true);
    const text = await runBytes(
      ['--config', d.configFile, 'play', 'rec-alice-1', '--format', 'text'],
      as('admin'),
    );
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.equals(ALICE_BYTES)).toBe(true);
  });

  it('play --commands lists the programs enhanced recording saw, oldest first, with their offset', async () => {
    // Into the daemon's audit log the way the proxy writes a node's events: another writer on the data dir.
    const gw = await createGateway({
      config: await loadConfig({ file: d.configFile, env: {} }),
      env: {},
      auditSpoolName: 'test-enhanced',
    });
    const command = (session_id: string, pid: number, argv: string[], extra = {}) =>
      gw.audit.emit({
        type: 'session.command',
        session_id,
        user: 'alice',
        login: 'root',
        server: 'node1',
        pid,
        ppid: 1,
        uid: 0,
        program: `/usr/bin/${argv[0]}`,
        argv,
        ...extra,
      });
    try {
      await command('rec-alice-1', 101, ['bash', '-c', 'cat /etc/hostname | wc -c']);
      await command('rec-alice-1', 102, ['cat', '/etc/hostname']);
      // Another session's command is not this recording's.
      await command('rec-bob-1', 201, ['kubectl-said-this']);
      await command('rec-alice-1', 103, ['wc', '-c'], { argv_truncated: true });
    } finally {
      await gw.close();
    }
    const r = await run(['--config', d.configFile, 'play', 'rec-alice-1', '--commands'], {
      env: as('admin'),
    });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^OFFSET\s+PID\s+COMMAND$/);
    expect(lines[1]).toMatch(/^-+\s+-+\s+-+$/);
    expect(lines.slice(2).map((l) => l.replace(/^\S+\s+/, ''))).toEqual([
      '101  bash -c cat /etc/hostname | wc -c',
      '102  cat /etc/hostname',
      '103  wc -c ...',
    ]);
    // The recording started before these events: the offsets are its clock, not negative.
    for (const l of lines.slice(2)) expect(l).toMatch(/^\d+:\d\d\.\d{3}\s/);

    // Remotely, as JSON: the events with offset_ms; as the admin.
    const j = await run(['play', 'rec-alice-1', '--commands', '--json'], { env: as('admin') });
    expect(j.code, j.stderr).toBe(0);
    const rows = JSON.parse(j.stdout) as { pid: number; offset_ms: number; session_id: string }[];
    expect(rows.map((x) => x.pid)).toEqual([101, 102, 103]);
    expect(rows.every((x) => x.session_id === 'rec-alice-1' && x.offset_ms >= 0)).toBe(true);

    const none = await run(['play', 'rec-bob-1', '--commands', '--json'], { env: as('admin') });
    expect((JSON.parse(none.stdout) as { pid: number }[]).map((x) => x.pid)).toEqual([201]);
    const bad = await run(['play', 'rec-alice-1', '--commands', '--format', 'text'], { env: as('admin') });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("'--commands' cannot be used with option '--format");
    const json = await run(['play', 'rec-alice-1', '--json'], { env: as('admin') });
    expect(json.code).toBe(2);
    expect(json.stderr).toContain('--json goes with --commands');
  });

  it('exports asciicast v2 that the real asciinema accepts', async () => {
    const r = await runBytes(
      ['--config', d.configFile, 'play', 'rec-alice-1', '--format', 'asciicast'],
      as('admin'),
    );
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.toString('utf8').trimEnd().split('\n');
    expect(JSON.parse(lines[0]!)).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(lines.at(-1)).toMatch(/^\[[\d.]+,"r","100x30"\]$/);
    const file = join(d.root, 'alice.cast');
    writeFileSync(file, r.stdout);
    // asciinema cat needs a terminal (it opens /dev/tty): script(1) provides one, raw so nothing is translated.
    const { stdout } = await execFileP(
      'script',
      ['-qec', `stty raw -echo; asciinema cat '${file}'`, '/dev/null'],
      {
        encoding: 'buffer',
        timeout: 30_000,
      },
    );
    expect(Buffer.from(stdout).equals(ALICE_BYTES)).toBe(true);
  });

  it('remotely: an admin sees every recording and plays any', async () => {
    const r = await run(['recordings', 'ls', '--json'], { env: as('admin') });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { session_id: string }[]).map((m) => m.session_id)).toEqual([
      'rec-alice-live',
      'rec-bob-1',
      'rec-alice-1',
    ]);
    const p = await runBytes(['play', 'rec-bob-1', '--format', 'text'], as('admin'));
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout.toString()).toBe('kubectl says hi\r\n');
    const timed = await runBytes(['play', 'rec-alice-1', '--speed', '50', '--max-idle', '0.01'], as('admin'));
    expect(timed.code, timed.stderr).toBe(0);
    expect(timed.stdout.equals(ALICE_BYTES)).toBe(true);
  });

  it('remotely: a user without recording rules lists and plays only their own', async () => {
    const r = await run(['recordings', 'ls', '--json'], { env: as('alice') });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { session_id: string }[]).map((m) => m.session_id)).toEqual([
      'rec-alice-live',
      'rec-alice-1',
    ]);
    // Even asking for bob's by name gives only her own.
    const other = await run(['recordings', 'ls', '--user', 'bob', '--json'], { env: as('alice') });
    expect(other.code, other.stderr).toBe(0);
    expect((JSON.parse(other.stdout) as { user: string }[]).map((m) => m.user)).toEqual(['alice', 'alice']);

    const own = await runBytes(['play', 'rec-alice-1', '--format', 'text'], as('alice'));
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout.equals(ALICE_BYTES)).toBe(true);

    const denied = await runBytes(['play', 'rec-bob-1', '--format', 'text'], as('alice'));
    expect(denied.code).toBe(1);
    expect(denied.stdout.length).toBe(0);
    expect(denied.stderr).toMatch(/^error: .*recording/m);
    // A missing recording looks the same as someone else's: no probing for session ids.
    const missing = await runBytes(['play', 'no-such-session', '--format', 'text'], as('alice'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(denied.stderr);
  });

  it('bad input: an unknown recording and bad flags say what to do', async () => {
    const nf = await run(['play', 'no-such-session', '--format', 'text'], { env: as('admin') });
    expect(nf.code).toBe(1);
    expect(nf.stderr).toMatch(/^error: no recording for session "no-such-session"/m);
    expect(nf.stderr).toMatch(/^hint: list recordings with gatehouse recordings ls/m);
    const bad = await run(['play', '../etc', '--format', 'text'], { env: as('admin') });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid session id/);
    const speed = await run(['play', 'rec-alice-1', '--speed', '0'], { env: as('admin') });
    expect(speed.code).toBe(2);
    expect(speed.stderr).toMatch(/--speed "0"/);
    const fmt = await run(['play', 'rec-alice-1', '--format', 'yaml'], { env: as('admin') });
    expect(fmt.code).toBe(2);
  });

  it('recordings rm: needs a reason and recording:delete, refuses a live one, audits who, what and why', async () => {
    const gone = await store.create({
      session_id: 'rec-gone-1',
      kind: 'ssh',
      user: 'bob',
      server: 'node1',
      cols: 80,
      rows: 24,
    });
    gone.output(Buffer.from('evidence\r\n'));
    await gone.close();
    const noReason = await run(['recordings', 'rm', 'rec-gone-1'], { env: as('admin') });
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/needs --reason/);
    const blank = await run(['recordings', 'rm', 'rec-gone-1', '--reason', '  '], { env: as('admin') });
    expect(blank.code).toBe(2);
    const alice = await run(['recordings', 'rm', 'rec-gone-1', '--reason', 'mine now'], { env: as('alice') });
    expect(alice.code).toBe(1);
    expect(alice.stderr).toMatch(/denied/i);
    const liveRm = await run(['recordings', 'rm', 'rec-alice-live', '--reason', 'x'], { env: as('admin') });
    expect(liveRm.code).toBe(1);
    expect(liveRm.stderr).toMatch(/still being written/);
    expect((await store.get('rec-gone-1'))?.session_id).toBe('rec-gone-1');

    const ok = await run(['recordings', 'rm', 'rec-gone-1', '--reason', 'GDPR erasure #4411'], {
      env: as('admin'),
    });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('deleted recording rec-gone-1\n');
    expect(await store.get('rec-gone-1')).toBeUndefined();
    const again = await run(['recordings', 'rm', 'rec-gone-1', '--reason', 'again'], { env: as('admin') });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no recording for session "rec-gone-1"/);

    const events = auditEvents(d).filter((e) => e.type === 'recording.delete');
    expect(events).toEqual([
      expect.objectContaining({
        user: 'admin',
        code: 'GH1213I',
        session_id: 'rec-gone-1',
        recording_user: 'bob',
        kind: 'ssh',
        reason: 'GDPR erasure #4411',
      }),
    ]);
    expect(
      auditEvents(d).some((e) => e.type === 'access.denied' && e.user === 'alice' && e.resource === 'delete'),
    ).toBe(true);
  });

  it('follows a live recording through the API until it ends', async () => {
    let first!: () => void;
    const sawFirst = new Promise<void>((r) => {
      first = r;
    });
    const done = runBytes(
      ['play', 'rec-alice-live', '--format', 'text', '--follow'],
      as('alice'),
      (soFar) => {
        if (soFar.toString().includes('still running')) first();
      },
    );
    // The follower has printed what existed while the session is still live; then the session goes on and ends.
    await sawFirst;
    expect((await store.get('rec-alice-live'))?.ended).toBeUndefined();
    live.output(Buffer.from('more output\r\n'));
    await new Promise((r) => setTimeout(r, 300));
    live.output(Buffer.from('bye\r\n'));
    await live.close();
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('still running\r\nmore output\r\nbye\r\n');
  });

  it('a desktop recording: ls shows kind, login@desktop and length; play prints its input timeline and the web player address (it printed RDP bytes)', async () => {
    const rec = await store.create({
      session_id: 'rec-desk-1',
      kind: 'desktop',
      user: 'alice',
      login: 'Administrator',
      server: 'win1',
      cols: 0,
      rows: 0,
    });
    const rdp = Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00, 0x03, 0x00, 0x00, 0x07, 0x02, 0xf0, 0x80]);
    rec.output(rdp);
    for (let i = 0; i < 3; i++) rec.desktopInput({ kind: 'key' });
    rec.desktopInput({ kind: 'button', button: 'left', down: true, x: 10, y: 20 });
    rec.desktopInput({ kind: 'button', button: 'left', down: false, x: 10, y: 20 });
    rec.desktopInput({ kind: 'key', special: 'ctrl+alt+del' });
    await new Promise((r) => setTimeout(r, 1100));
    rec.marker('ended by local:root');
    await rec.close();

    const ls = await run(['--config', d.configFile, 'recordings', 'ls', '--kind', 'desktop'], {
      env: as('admin'),
    });
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.trimEnd().split('\n')[2]).toMatch(
      /^rec-desk-1\s+desktop\s+alice\s+Administrator@win1\s+\S+\s+1s\s+12 B$/,
    );

    const p = await runBytes(['play', 'rec-desk-1'], as('alice'));
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout.includes(rdp)).toBe(false);
    const text = p.stdout.toString();
    expect(text).toMatch(
      /^Desktop session rec-desk-1: Administrator@win1 by alice, started \S+, 1s, 12 B from the desktop$/m,
    );
    expect(text).toMatch(/^Input: 4 key presses \(which keys is not recorded\), 1 click$/m);
    expect(text).toMatch(/^0:00\.\d{3}\s+typing: 3 keys$/m);
    expect(text).toMatch(/^0:00\.\d{3}\s+left click at 10,20$/m);
    expect(text).toMatch(/^0:00\.\d{3}\s+Ctrl\+Alt\+Del$/m);
    expect(text).toMatch(/^0:01\.\d{3}\s+ended by local:root$/m);
    expect(text).toContain(`https://${d.proxy}/web/desktop?recording=rec-desk-1`);

    const j = await run(['play', 'rec-desk-1', '--json'], { env: as('alice') });
    expect(j.code, j.stderr).toBe(0);
    const s = JSON.parse(j.stdout) as {
      web_url: string;
      key_presses: number;
      clicks: number;
      recording: { kind: string };
      activity: { kind: string; t: number; offset: string }[];
    };
    expect(s).toMatchObject({ key_presses: 4, clicks: 1, recording: { kind: 'desktop' } });
    expect(s.web_url).toBe(`https://${d.proxy}/web/desktop?recording=rec-desk-1`);
    expect(s.activity.map((a) => a.kind)).toEqual(['typing', 'click', 'key', 'marker']);

    // The recorded events as they are stay available; terminal-only flags say what to use instead.
    const events = await run(['play', 'rec-desk-1', '--format', 'json'], { env: as('alice') });
    expect(events.code, events.stderr).toBe(0);
    expect(events.stdout).toContain('"type":"desktop_input"');
    const speed = await run(['play', 'rec-desk-1', '--speed', '2'], { env: as('alice') });
    expect(speed.code).toBe(2);
    expect(speed.stderr).toMatch(/--speed does not apply to a desktop recording/);
    expect(speed.stderr).toMatch(/web player/);
  });
});
