/**
 * The SSH verbs of the built CLI against `gatehouse start` and a real sshd:
 * nodes add / ls, gatehouse ssh (OpenSSH with `gatehouse proxy ssh` as the
 * ProxyCommand: SSH inside TLS, ALPN gatehouse-ssh), gatehouse scp,
 * gatehouse config ssh used by plain ssh, sessions ls/kill.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientRun, runClient, waitFor } from '../../core/test/helpers.js';
import { cpuHasAes } from '../src/commands/ssh-client.js';
import {
  addAccessUser,
  addNode,
  BIN,
  type Daemon,
  PASSWORD,
  run,
  startDaemon,
  startNodeSshd,
} from './harness.js';

const _exec = promisify(execFile);

let d: Daemon;
let sshd: Sshd;
let home: string;
/** A fresh Unix account to log in as (root's dotfiles may do slow or locking work at login). */
const login = `ghc${randomBytes(3).toString('hex')}`;

/** Runs a program to completion (30 s cap) with the test user's GATEHOUSE_HOME. */
function tool(
  program: string,
  args: string[],
  input = '',
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<ClientRun> {
  return runClient(program, args, {
    env: { ...process.env, GATEHOUSE_HOME: home, ...extraEnv },
    input,
    timeoutMs: 30_000,
  });
}

const gh = (args: string[], input = '', extraEnv: NodeJS.ProcessEnv = {}) =>
  tool(process.execPath, [BIN, ...args], input, extraEnv);
const BATCH = ['-o', 'BatchMode=yes'];

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  d = await startDaemon({ cluster: 'acme' });
  home = join(d.root, 'home-alice');
  await addAccessUser(d, 'alice', login);
  sshd = await startNodeSshd(d, ['PrintMotd no']);
  await addNode(d, 'node1', sshd.port, ['env=dev']);
  const loggedIn = await gh(
    ['login', '--proxy', d.proxy, '--user', 'alice', '--ca-pin', d.pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(loggedIn.code, loggedIn.stderr).toBe(0);
}, 90_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  await sshd?.stop();
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('gatehouse ls / nodes', () => {
  it('lists the nodes the user may reach with labels and allowed logins', async () => {
    const r = await gh(['ls', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const nodes = JSON.parse(r.stdout) as {
      name: string;
      labels: Record<string, string>;
      allowed?: { logins: string[] };
    }[];
    expect(nodes).toEqual([
      expect.objectContaining({ name: 'node1', labels: { env: 'dev' }, allowed: { logins: [login] } }),
    ]);
    expect((await gh(['ls', '--label', 'env=prod', '--json'])).stdout.trim()).toBe('[]');
    const text = await gh(['ls']);
    expect(text.stdout).toMatch(new RegExp(`node1\\s+127\\.0\\.0\\.1:\\d+\\s+env=dev\\s+${login}`));
  });

  it('refuses nodes add without a node:create rule', async () => {
    const r = await gh(['nodes', 'add', 'x1', '--addr', '127.0.0.1:1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no role allows create on node');
  });
});

describe('gatehouse ssh (OpenSSH + gatehouse proxy ssh as ProxyCommand)', () => {
  it('runs a command on the node; the exit status comes back', async () => {
    const r = await gh(['ssh', `${login}@node1`, 'echo', 'via-alpn-$((20+1));', 'exit', '4']);
    expect(r.stdout).toBe('via-alpn-21\n');
    expect(r.code).toBe(4);
  });

  it('-tt forces a terminal without a local one, as ssh -tt (commander used to fold it into one -t)', async () => {
    const r = await gh(['ssh', '-tt', `${login}@node1`, 'tty']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\/dev\/pts\/\d+\r\n$/);
    const once = await gh(['ssh', '-t', `${login}@node1`, 'tty']);
    expect(once.stderr).toContain('Pseudo-terminal will not be allocated');
  });

  it('-A forwards the ssh-agent of the user side to the node (the access role allows it)', async () => {
    const key = join(d.root, 'agent_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'forwarded', '-f', key]);
    const sock = join(d.root, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    try {
      await waitFor(async () => existsSync(sock), 'ssh-agent to listen');
      execFileSync('ssh-add', [key], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      const fp = execFileSync('ssh-keygen', ['-lf', `${key}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
      const r = await gh(['ssh', '-A', `${login}@node1`, 'ssh-add -l'], '', { SSH_AUTH_SOCK: sock });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(fp);
    } finally {
      agent.kill();
    }
  });

  it('shows why access is refused: a login the role does not allow, an unknown node', async () => {
    const denied = await gh(['ssh', 'nobody@node1', 'true']);
    expect(denied.code).toBe(255);
    expect(denied.stderr).toContain('certificate is not valid for "nobody"');
    const unknown = await gh(['ssh', `${login}@nosuch`, 'true']);
    expect(unknown.code).toBe(255);
    expect(unknown.stderr).toContain('node "nosuch" is not registered');
  });

  it('gatehouse scp copies a file to the node and back', async () => {
    const src = join(d.root, 'up.bin');
    const data = randomBytes(50_000);
    writeFileSync(src, data);
    const remote = `/tmp/gh-cli-scp-${randomBytes(4).toString('hex')}`;
    const up = await gh(['scp', ...BATCH, src, `${login}@node1:${remote}`]);
    expect(up.code, up.stderr).toBe(0);
    const back = join(d.root, 'down.bin');
    const down = await gh(['scp', ...BATCH, `${login}@node1:${remote}`, back]);
    expect(down.code, down.stderr).toBe(0);
    expect(readFileSync(back).equals(data)).toBe(true);
    await gh(['ssh', `${login}@node1`, 'rm', '-f', remote]);
  });

  it('plain ssh with the block from gatehouse config ssh reaches NODE.CLUSTER', async () => {
    const cfg = await gh(['config', 'ssh']);
    expect(cfg.code, cfg.stderr).toBe(0);
    expect(cfg.stdout).toContain('Host *.acme');
    const file = join(d.root, 'ssh_config');
    writeFileSync(file, cfg.stdout);
    const r = await tool('ssh', ['-F', file, ...BATCH, `${login}@node1.acme`, 'echo', 'via-config']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('via-config\n');
    // Where the CPU has AES instructions the block puts AES-GCM first (cheaper than chacha20 for bulk data).
    const v = await tool('ssh', ['-v', '-F', file, ...BATCH, `${login}@node1.acme`, 'true']);
    expect(v.code, v.stderr).toBe(0);
    const cipher = /server->client cipher: (\S+)/.exec(v.stderr)?.[1];
    expect(cipher).toBe(cpuHasAes() ? 'aes128-gcm@openssh.com' : 'chacha20-poly1305@openssh.com');
  });

  it('gatehouse proxy ssh prints the refusal on stderr and exits non-zero', async () => {
    const r = await gh(['proxy', 'ssh', 'nosuch:22']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('not registered');
  });
});

describe('gatehouse sessions', () => {
  it('lists (none live) and refuses to kill an unknown session', async () => {
    const ls = await run(['--config', d.configFile, 'sessions', 'ls', '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout)).toEqual([]);
    const kill = await gh(['sessions', 'kill', 'nope']);
    expect(kill.code).not.toBe(0);
  });
});
