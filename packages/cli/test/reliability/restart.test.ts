/**
 * kill -9 of the daemon mid-session, then a restart on the same data dir:
 * the session it ran gets its end in the audit log (reason gateway_restart),
 * its recording is finalized (no longer "live", `play --follow` ends), and the
 * new daemon serves again.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  admin,
  BIN,
  type Daemon,
  PASSWORD,
  restartDaemon,
  startDaemon,
  startNodeSshd,
} from '../harness.js';

const login = `ghr${randomBytes(3).toString('hex')}`;
let first: Daemon;
let second: Daemon | undefined;
let sshd: Sshd;
let home: string;

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/sh', login]);
  execFileSync('usermod', ['-p', '*', login]);
  first = await startDaemon({ cluster: 'restart' });
  home = join(first.root, 'home-alice');
  await addAccessUser(first, 'alice', login);
  sshd = await startNodeSshd(first, ['PrintMotd no']);
  await addNode(first, 'node1', sshd.port);
  const r = await runClient(
    process.execPath,
    [BIN, 'login', '--proxy', first.proxy, '--user', 'alice', '--ca-pin', first.pin, '--password-stdin'],
    { env: { ...process.env, GATEHOUSE_HOME: home }, input: `${PASSWORD}\n`, timeoutMs: 30_000 },
  );
  expect(r.code, r.stderr).toBe(0);
}, 90_000);

afterAll(async () => {
  await sshd?.stop();
  await second?.stop();
  await first?.stop();
  if (first) rmSync(first.root, { recursive: true, force: true });
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
});

describe('reliability: kill -9 and restart mid-session', () => {
  it('ends the sessions the killed gateway left open and finalizes their recordings', async () => {
    const shell: ChildProcess = spawn(process.execPath, [BIN, 'ssh', '-tt', `${login}@node1`], {
      env: { ...process.env, GATEHOUSE_HOME: home },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    shell.stdout!.on('data', (c) => {
      out += c;
    });
    const exited = new Promise<void>((r) => shell.on('exit', () => r()));
    shell.stdin!.write('echo before-kill-$((3*3))\n');
    await expect.poll(() => out, { timeout: 20_000 }).toContain('before-kill-9');
    const live = JSON.parse((await admin(first, ['recordings', 'ls', '--json'])).stdout) as {
      session_id: string;
      ended?: string;
    }[];
    expect(live).toHaveLength(1);
    expect(live[0]!.ended).toBeUndefined();
    const sessionId = live[0]!.session_id;
    // Let the recorder seal a chunk (it flushes every second), then kill without warning.
    await new Promise((r) => setTimeout(r, 1_500));
    process.kill(first.pid, 'SIGKILL');
    await exited;

    second = await restartDaemon(first);
    // The recording is no longer live, and reading it to the end terminates.
    const recs = JSON.parse((await admin(second, ['recordings', 'ls', '--json'])).stdout) as {
      session_id: string;
      ended?: string;
      error?: string;
    }[];
    expect(recs).toEqual([expect.objectContaining({ session_id: sessionId, error: 'gateway_restart' })]);
    expect(recs[0]!.ended).toBeDefined();
    const played = await admin(second, ['play', sessionId, '--follow', '--speed', '100']);
    expect(played.stdout).toContain('before-kill-9');

    // The audit log has the end, once, with why.
    const found = await admin(second, ['audit', 'search', '--type', 'session.end', '--json']);
    const ends = (JSON.parse(found.stdout) as { events: AuditEvent[] }).events.filter(
      (e) => e.session_id === sessionId,
    );
    expect(ends).toEqual([
      expect.objectContaining({
        type: 'session.end',
        reason: 'gateway_restart',
        interactive: true,
        recorded: true,
      }),
    ]);

    // A second restart does not end it again.
    await second.stop();
    second = await restartDaemon(first);
    const again = await admin(second, ['audit', 'search', '--type', 'session.end', '--json']);
    expect(
      (JSON.parse(again.stdout) as { events: AuditEvent[] }).events.filter((e) => e.session_id === sessionId),
    ).toHaveLength(1);
  }, 120_000);
});
