/**
 * `gatehouse join` and `gatehouse sessions ls` of the built CLI against
 * `gatehouse start` and a real sshd: alice's interactive session is real
 * OpenSSH (`ssh -tt` with the block from `gatehouse config ssh`), driven
 * through a stdin pipe; the admin watches it and types into it, bob (access
 * role only) is refused, and the joins and leaves are in the audit log.
 */
import { execFile, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { AuditEvent } from '@gatehouse/audit';
import type { SessionView } from '@gatehouse/core';
import { type Sshd, TEST_LOGIN } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addAccessUser,
  addNode,
  BIN,
  type Daemon,
  PASSWORD,
  Proc,
  startDaemon,
  startNodeSshd,
} from './harness.js';

const _exec = promisify(execFile);

let d: Daemon;
let sshd: Sshd;
const homes = { admin: '', alice: '', bob: '' };
type Who = keyof typeof homes;
/** Every process a test started, killed in afterAll if a failed test left it running. */
const started: Proc[] = [];

function start(who: Who, program: string, args: string[]): Proc {
  return new Proc(
    spawn(program, args, {
      env: { ...process.env, GATEHOUSE_DATA_DIR: '', GATEHOUSE_HOME: homes[who] },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
    started,
  );
}

/** `gatehouse ARGS` as a user, to completion. */
async function gh(who: Who, args: string[], input = '') {
  const p = start(who, process.execPath, [BIN, ...args]);
  p.child.stdin.end(input);
  const code = await p.exit(30_000);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

const sshConfig = () => join(d.root, 'ssh_config_alice');

/** alice's interactive shell on node1: real OpenSSH with a pty, its keyboard a pipe. */
async function ownerSession(): Promise<{ owner: Proc; id: string }> {
  const before = new Set(await sessionIds());
  const owner = start('alice', 'ssh', ['-F', sshConfig(), '-tt', `${TEST_LOGIN}@node1.acme`]);
  const deadline = Date.now() + 20_000;
  for (;;) {
    const id = (await sessionIds()).find((x) => !before.has(x));
    if (id) return { owner, id };
    if (Date.now() > deadline || owner.child.exitCode !== null)
      throw new Error(`no new live session\nstdout: ${owner.stdout}\nstderr: ${owner.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** alice's live SSH sessions on node1, as she lists them. */
async function sessionIds(): Promise<string[]> {
  const r = await gh('alice', ['sessions', 'ls', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as SessionView[])
    .filter((s) => s.kind === 'ssh' && s.server === 'node1')
    .map((s) => s.id);
}

async function addUser(name: string): Promise<void> {
  await addAccessUser(d, name, TEST_LOGIN);
  const login = await gh(
    name as Who,
    ['login', '--proxy', d.proxy, '--user', name, '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(login.code, login.stderr).toBe(0);
}

beforeAll(async () => {
  d = await startDaemon({ cluster: 'acme' });
  for (const who of Object.keys(homes) as Who[]) homes[who] = join(d.root, `home-${who}`);
  const invite = await gh(
    'admin',
    ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(invite.code, invite.stderr).toBe(0);
  const admin = await gh(
    'admin',
    ['login', '--proxy', d.proxy, '--user', 'admin', '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(admin.code, admin.stderr).toBe(0);
  await addUser('alice');
  await addUser('bob');

  sshd = await startNodeSshd(d, ['PrintMotd no', 'PrintLastLog no']);
  await addNode(d, 'node1', sshd.port);
  const cfg = await gh('alice', ['config', 'ssh']);
  expect(cfg.code, cfg.stderr).toBe(0);
  writeFileSync(sshConfig(), `${cfg.stdout}Host *\n  BatchMode yes\n`);
}, 120_000);

afterAll(async () => {
  for (const p of started) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await sshd?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('gatehouse join', () => {
  let owner: Proc;
  let id: string;

  beforeAll(async () => {
    ({ owner, id } = await ownerSession());
    await owner.waitFor('stdout', /\$ $/);
  }, 60_000);

  afterAll(async () => {
    if (owner.child.exitCode === null) {
      owner.child.stdin.end('exit\n');
      await owner.exit();
    }
  });

  it('sessions ls shows the session with its kind, user, login@node and start time', async () => {
    const r = await gh('admin', ['sessions', 'ls']);
    expect(r.code, r.stderr).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith(id));
    expect(row, r.stdout).toMatch(
      new RegExp(`^${id}\\s+ssh\\s+alice\\s+${TEST_LOGIN}@node1\\s+\\d{4}-\\d\\d-\\d\\dT\\S+`),
    );
    // bob sees only his own sessions (none) without session:list.
    const bob = await gh('bob', ['sessions', 'ls', '--json']);
    expect(bob.code, bob.stderr).toBe(0);
    expect(JSON.parse(bob.stdout)).toEqual([]);
  });

  it("an observer sees the owner's screen; its keys never reach the session; Ctrl-C leaves", async () => {
    const observer = start('admin', process.execPath, [BIN, 'join', id]);
    await observer.waitFor(
      'stderr',
      new RegExp(`Joined session ${id} \\(alice@node1, observer mode\\)\\. Press Ctrl-\\] to leave\\.`),
    );
    owner.write('echo owner-$((40+2))\n');
    await observer.waitFor('stdout', /owner-42/);
    observer.write('echo observer-typed\n');
    // The owner's next command runs after anything the observer could have sent.
    owner.write('echo marker-$((1+1))\n');
    await owner.waitFor('stdout', /marker-2/);
    await observer.waitFor('stdout', /marker-2/);
    expect(owner.stdout).not.toContain('observer-typed');
    observer.write('\x03');
    expect(await observer.exit()).toBe(0);
    expect(observer.stderr).toContain(`Left session ${id}.`);
  });

  it("a peer's typing runs in the owner's shell; both see it", async () => {
    const peer = start('admin', process.execPath, [BIN, 'join', '--mode', 'peer', id]);
    await peer.waitFor('stderr', /\(alice@node1, peer mode\)/);
    peer.write('echo from-peer-$((2+3))\r');
    await owner.waitFor('stdout', /from-peer-5/);
    await peer.waitFor('stdout', /from-peer-5/);
    peer.write('\x1d');
    expect(await peer.exit()).toBe(0);
  });

  it('the owner may join their own session as a peer without join_sessions; --quiet prints nothing', async () => {
    const self = start('alice', process.execPath, [BIN, 'join', '--mode', 'peer', '--quiet', id]);
    self.write('echo self-$((3+3))\r');
    await owner.waitFor('stdout', /self-6/);
    self.write('\x1d');
    expect(await self.exit()).toBe(0);
    expect(self.stderr).toBe('');
  });

  it('refuses bob (access role only) with the reason, exit 1', async () => {
    const r = await gh('bob', ['join', id]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: .*(join_sessions|joining other users' sessions|access denied)/im);
    expect(r.stderr).toMatch(/^hint: /m);
  });

  it('an unknown session id is a clear error, exit 1', async () => {
    const r = await gh('admin', ['join', 'no-such-session']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: .*no-such-session/m);
    expect(r.stderr).not.toContain('unexpected');
  });

  it('a bad --mode is a usage error', async () => {
    const r = await gh('admin', ['join', '--mode', 'driver', id]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('driver');
  });

  it('joins and leaves are audited (who, whose session, where, mode; refusals too)', async () => {
    const r = await gh('admin', [
      'audit',
      'search',
      '--type',
      'session.join,session.leave',
      '--all',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const events = (JSON.parse(r.stdout) as { events: AuditEvent[] }).events as unknown as Record<
      string,
      unknown
    >[];
    const mine = events.filter((e) => e.session_id === id);
    const common = { session_id: id, session_kind: 'ssh', owner: 'alice', server: 'node1' };
    expect(mine).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          ...common,
          type: 'session.join',
          user: 'admin',
          mode: 'observer',
          success: true,
        }),
        expect.objectContaining({
          ...common,
          type: 'session.join',
          user: 'admin',
          mode: 'peer',
          success: true,
        }),
        expect.objectContaining({
          ...common,
          type: 'session.join',
          user: 'alice',
          mode: 'peer',
          success: true,
        }),
        expect.objectContaining({
          ...common,
          type: 'session.join',
          user: 'bob',
          mode: 'observer',
          success: false,
          error: expect.any(String),
        }),
        expect.objectContaining({ ...common, type: 'session.leave', user: 'admin', mode: 'observer' }),
        expect.objectContaining({ ...common, type: 'session.leave', user: 'admin', mode: 'peer' }),
      ]),
    );
    for (const leave of mine.filter((e) => e.type === 'session.leave'))
      expect(leave.duration_ms).toEqual(expect.any(Number));
  });

  it('in a real terminal a peer types in raw mode, sees the bytes unmapped, and gets the modes back', async () => {
    // script(1) gives the join a sized pty; stty -a before and after shows the modes it left behind.
    const inPty = start('admin', 'script', [
      '-q',
      '-e',
      '-c',
      `stty rows 40 cols 120; stty -a; ${process.execPath} ${BIN} join --mode peer ${id}; echo "exit=$?"; stty -a`,
      '/dev/null',
    ]);
    await inPty.waitFor('stdout', /peer mode/);
    inPty.write('echo in-pty-$((5+5))\r');
    await owner.waitFor('stdout', /in-pty-10/);
    // The session's CRLF arrives as sent: output processing is off (no CRCRLF).
    await inPty.waitFor('stdout', /\nin-pty-10\r\n/);
    expect(inPty.stdout).not.toContain('\r\r\n');
    // Ctrl-] alone, no Enter: only a terminal in raw mode hands it over at once.
    inPty.write('\x1d');
    await inPty.waitFor('stdout', /exit=0[\s\S]*icanon/);
    expect(await inPty.exit()).toBe(0);
    const [before, after] = inPty.stdout.split(/exit=0/);
    const modes = (s: string) => /(-?opost)\b[\s\S]*?(-?icanon)\b[\s\S]*?(-?echo)\b/.exec(s)?.slice(1);
    expect(modes(before ?? '')).toEqual(['opost', 'icanon', 'echo']);
    expect(modes(after ?? '')).toEqual(['opost', 'icanon', 'echo']);
  });

  it('an observer attached when the shell exits is told the session ended, exit 0', async () => {
    const observer = start('admin', process.execPath, [BIN, 'join', id]);
    await observer.waitFor('stderr', /Joined session/);
    owner.child.stdin.end('exit\n');
    expect(await owner.exit()).toBe(0);
    expect(await observer.exit()).toBe(0);
    expect(observer.stderr).toMatch(/Gatehouse: session ended/);
  });
});

describe('gatehouse join, a session the gateway ends', () => {
  it('an observer is told the reason when an admin kills the session, exit 0', async () => {
    const { owner, id } = await ownerSession();
    await owner.waitFor('stdout', /\$ $/);
    const observer = start('admin', process.execPath, [BIN, 'join', id]);
    await observer.waitFor('stderr', /Joined session/);
    const kill = await gh('admin', ['sessions', 'kill', id]);
    expect(kill.code, kill.stderr).toBe(0);
    expect(await observer.exit()).toBe(0);
    expect(observer.stderr).toMatch(/^Gatehouse: session ended: \S.*$/m);
    await owner.exit();
  }, 60_000);
});
