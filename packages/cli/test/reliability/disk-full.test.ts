/**
 * A full data disk, against the real daemon, a real sshd and OpenSSH: new
 * work is refused with a clear message, what already happened is kept and
 * written once space returns, no audit line is lost or corrupted, and the
 * daemon never exits.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type AuditEvent, eventFiles } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SmallDisk } from '../../../audit/test/reliability/small-disk.js';
import { runClient } from '../../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  admin,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  startDaemon,
  startNodeSshd,
} from '../harness.js';

const login = `ghf${randomBytes(3).toString('hex')}`;
let disk: SmallDisk;
let d: Daemon;
let sshd: Sshd;
let home: string;

const gh = (args: string[], input = '') =>
  runClient(process.execPath, [BIN, ...args], {
    env: { ...process.env, GATEHOUSE_HOME: home },
    input,
    timeoutMs: 30_000,
  });

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/sh', login]);
  execFileSync('usermod', ['-p', '*', login]);
  disk = new SmallDisk(48 * 1024 * 1024);
  d = await startDaemon({ cluster: 'full', dataDir: join(disk.dir, 'data') });
  home = join(d.root, 'home-alice');
  await addAccessUser(d, 'alice', login);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await addNode(d, 'node1', sshd.port);
  const r = await gh(
    ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(r.code, r.stderr).toBe(0);
}, 90_000);

afterAll(async () => {
  await sshd?.stop();
  if (d) await d.stop();
  disk?.unmount();
  if (d) rmSync(d.root, { recursive: true, force: true });
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
});

describe('reliability: a full data disk fails closed and loses no audit', () => {
  it('refuses new work while full, ends recorded sessions, and catches up when space returns', async () => {
    // A recorded interactive session that is running when the disk fills.
    const shell: ChildProcess = spawn(process.execPath, [BIN, 'ssh', '-tt', `${login}@node1`], {
      env: { ...process.env, GATEHOUSE_HOME: home },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let shellOut = '';
    // The reason may come on either stream: the channel's stderr, or the client's own stderr when the
    // connection closes first (the clean-clone run under load missed it on stdout once).
    shell.stdout!.on('data', (c) => {
      shellOut += c;
    });
    shell.stderr!.on('data', (c) => {
      shellOut += c;
    });
    const shellExit = new Promise<number | null>((r) => shell.on('exit', (code) => r(code)));
    shell.stdin!.write('echo ready-$((6*7))\n');
    await expect.poll(() => shellOut, { timeout: 20_000 }).toContain('ready-42');

    disk.fill();

    // The running session produces output; its recording cannot be written, so it ends.
    shell.stdin!.write('head -c 3000000 /dev/urandom | od\n');
    expect(await shellExit).not.toBe(0);
    expect(shellOut).toContain('an interactive session may not run unrecorded');

    // A full disk can still leave room in the last page of the audit file
    // (tmpfs allocates whole pages); events fit there until it is used up.
    // Failed logins (recorded, never refused for it) use it up: once one is
    // not written, the audit log can make nothing durable.
    const record = () => {
      const dir = join(d.dataDir, 'audit');
      const newest = eventFiles(dir).at(-1) as string;
      return statSync(join(dir, newest)).size;
    };
    for (let i = 0; i < 30; i++) {
      const before = record();
      const w = await gh(
        ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
        'wrong password\n',
      );
      expect(w.code).not.toBe(0);
      if (record() === before) break;
    }

    // New work is refused, in the client's own words.
    const cmd = await gh(['ssh', `${login}@node1`, 'echo', 'should-not-run']);
    expect(cmd.code).toBe(255);
    expect(cmd.stdout).not.toContain('should-not-run');
    expect(`${cmd.stderr}`).toMatch(/audit log/);
    const wrong = await gh(
      ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
      'wrong password\n',
    );
    expect(wrong.code).not.toBe(0);
    expect(d.alive(), d.err()).toBe(true);

    disk.free();
    // The gateway resumes by itself: the same command now runs.
    await expect
      .poll(async () => (await gh(['ssh', `${login}@node1`, 'echo', 'back-$((1+1))'])).stdout, {
        timeout: 30_000,
        interval: 1_000,
      })
      .toContain('back-2');
    expect(d.alive(), d.err()).toBe(true);

    // Everything that happened while the disk was full is on record, whole and once.
    await expect
      .poll(() => auditEvents(d).some((e) => e.type === 'user.login' && !e.success), { timeout: 10_000 })
      .toBe(true);
    const events = auditEvents(d);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    const ends = events.filter((e) => e.type === 'session.end' && e.login === login);
    expect(ends.some((e) => e.type === 'session.end' && e.interactive)).toBe(true);
    expect(events.some((e) => e.type === 'audit.backlog')).toBe(true);
    // The refused command: either its connection (access.denied) or its channel (exec with the error).
    expect(
      events.some(
        (e) =>
          (e.type === 'access.denied' && /audit log/.test(e.reason)) ||
          (e.type === 'exec' && /audit log/.test(e.error ?? '')),
      ),
    ).toBe(true);
    // And the index caught up too: the search finds the failed login.
    const found = await admin(d, ['audit', 'search', '--type', 'user.login', '--json']);
    const { events: logins } = JSON.parse(found.stdout) as { events: AuditEvent[] };
    expect(logins.some((e) => e.type === 'user.login' && !e.success)).toBe(true);
  }, 120_000);
});

describe('reliability: a read-only data dir', () => {
  it('gatehouse start refuses to run on it, saying which file and what to check, without a stack trace', async () => {
    const ro = new SmallDisk(16 * 1024 * 1024);
    try {
      const first = await startDaemon({ cluster: 'readonly', dataDir: join(ro.dir, 'data') });
      await first.stop();
      execFileSync('mount', ['-o', 'remount,ro', ro.dir]);
      const r = await runClient(process.execPath, [BIN, 'start', '--config', first.configFile], {
        env: { ...process.env },
        timeoutMs: 30_000,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^error: .*gatehouse\.db/m);
      expect(r.stderr).toMatch(/^hint: .*writable/m);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      rmSync(first.root, { recursive: true, force: true });
    } finally {
      ro.unmount();
    }
  });
});
