/**
 * An OpenSSH server onboarded with the CLI alone: `gatehouse nodes add`, then
 * `gatehouse nodes configure NAME --apply` run "on the node" with an admin's
 * login (the node is not the gateway host: no data dir, no embedding API, no
 * hand edits of sshd_config). Then `gatehouse ssh` and plain ssh with the
 * block of `gatehouse config ssh` reach it, and every hop checks a host
 * certificate (StrictHostKeyChecking stays on).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, SSHD, waitForPort } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientRun, runClient, waitFor } from '../../core/test/helpers.js';
import { admin, BIN, type Daemon, PASSWORD, startDaemon } from './harness.js';

const CLUSTER = 'agentless';
/** What OpenSSH logs for a certificate from a trusted CA whose principals the node does not accept. */
const PRINCIPAL_REFUSAL = /Certificate does not contain an authorized principal/;
const login = `gha${randomBytes(3).toString('hex')}`;
let d: Daemon;
let nodeDir: string;
let sshdConfig: string;
let sshdPort: number;
let sshd: ChildProcess | undefined;
/** GATEHOUSE_HOME per user; `cron` never logs in (what a renewal job on the node has). */
const homes = { ops: '', alice: '', cron: '' };

function gh(who: keyof typeof homes, args: string[], input = ''): Promise<ClientRun> {
  return runClient(process.execPath, [BIN, ...args], {
    env: { ...process.env, GATEHOUSE_HOME: homes[who], GATEHOUSE_DATA_DIR: '' },
    input,
    timeoutMs: 30_000,
  });
}

function tool(program: string, args: string[]): Promise<ClientRun> {
  return runClient(program, args, {
    env: { ...process.env, GATEHOUSE_HOME: homes.alice },
    timeoutMs: 30_000,
  });
}

async function startNodeSshd(): Promise<void> {
  const log = join(nodeDir, 'sshd.log');
  writeFileSync(log, '');
  sshd = spawn(SSHD, ['-D', '-f', sshdConfig, '-E', log], { stdio: 'ignore' });
  try {
    await waitForPort(sshdPort, sshd, 15_000, 'sshd');
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${readFileSync(log, 'utf8')}`);
  }
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  d = await startDaemon({ cluster: CLUSTER });
  homes.ops = join(d.root, 'home-ops');
  homes.alice = join(d.root, 'home-alice');
  homes.cron = join(d.root, 'home-cron');
  await admin(d, ['users', 'add', 'ops', '--roles', 'admin', '--password-stdin'], `${PASSWORD}\n`);
  await admin(
    d,
    ['users', 'add', 'alice', '--roles', 'access', '--logins', login, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  for (const who of ['ops', 'alice'] as const) {
    const r = await gh(
      who,
      ['login', '--proxy', d.proxy, '--user', who, '--ca-pin', d.pin, '--password-stdin'],
      `${PASSWORD}\n`,
    );
    expect(r.code, r.stderr).toBe(0);
  }
  // sshd -t (run by configure) and sshd itself need their privilege separation dir.
  mkdirSync('/run/sshd', { recursive: true });
  // The node machine's own sshd config, as a distribution ships it: no Gatehouse in it.
  nodeDir = join(d.root, 'node-etc-ssh');
  mkdirSync(nodeDir);
  sshdPort = await freePort();
  sshdConfig = join(nodeDir, 'sshd_config');
  writeFileSync(
    sshdConfig,
    [
      `Port ${sshdPort}`,
      'ListenAddress 127.0.0.1',
      'AuthorizedKeysFile none',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'PrintMotd no',
      'LogLevel VERBOSE',
      `PidFile ${join(nodeDir, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
}, 90_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd!.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  if (d) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

describe('agentless OpenSSH node: nodes add + nodes configure --apply', () => {
  it('configures the sshd from the node with an admin login, and gatehouse ssh reaches it', async () => {
    const add = await gh('ops', [
      'nodes',
      'add',
      'web1',
      '--addr',
      `127.0.0.1:${sshdPort}`,
      '--label',
      'env=dev',
    ]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('nodes configure web1 --apply');

    const dry = await gh('ops', ['nodes', 'configure', 'web1', '--sshd-config', sshdConfig]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('HostCertificate ');
    expect(readFileSync(sshdConfig, 'utf8')).not.toContain('gatehouse'); // printing writes nothing

    const r = await gh('ops', ['nodes', 'configure', 'web1', '--apply', '--sshd-config', sshdConfig]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`names:          web1, web1.${CLUSTER}, 127.0.0.1`);
    expect(r.stdout).toContain('sshd is not running'); // nothing to reload yet
    expect(r.stdout).toMatch(/nodes configure web1 --renew --apply --sshd-config /);
    const written = readFileSync(sshdConfig, 'utf8');
    expect(written.startsWith('# BEGIN gatehouse')).toBe(true);
    expect(written).toMatch(/^AuthorizedPrincipalsCommand \S+echo gatehouse-proxy:%u$/m);
    // The certificate: host type, signed by the cluster's host CA, for the node's names.
    const cert = execFileSync(
      'ssh-keygen',
      ['-L', '-f', join(nodeDir, 'gatehouse_host_ed25519_key-cert.pub')],
      {
        encoding: 'utf8',
      },
    );
    expect(cert).toContain('ssh-ed25519-cert-v01@openssh.com host certificate');
    expect(cert).toMatch(/Principals:\s*\n\s+web1\n\s+web1\.agentless\n\s+127\.0\.0\.1\n/);

    await startNodeSshd();
    const ssh = await gh('alice', ['ssh', `${login}@web1`, 'echo', 'agentless-$((40+2))']);
    expect(ssh.stderr).toBe('');
    expect(ssh.stdout).toBe('agentless-42\n');
  });

  it('plain ssh with the gatehouse config ssh block reaches web1.CLUSTER, host certificates checked', async () => {
    const cfg = await gh('alice', ['config', 'ssh']);
    expect(cfg.code, cfg.stderr).toBe(0);
    expect(cfg.stdout).toContain('StrictHostKeyChecking yes');
    const file = join(d.root, 'ssh_config');
    writeFileSync(file, cfg.stdout);
    const r = await tool('ssh', [
      '-F',
      file,
      '-o',
      'BatchMode=yes',
      `${login}@web1.${CLUSTER}`,
      'echo',
      'plain',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('plain\n');
  });

  it("the node's sshd shows its host certificate to a direct client, but refuses the user's own login certificate", async () => {
    // A known_hosts that trusts only the cluster's host CA, StrictHostKeyChecking on.
    const kh = join(d.root, 'known_hosts_direct');
    const ca = await gh('alice', [
      'ca',
      'export',
      '--format',
      'known_hosts',
      '--proxy',
      d.proxy,
      '--ca-pin',
      d.pin,
    ]);
    expect(ca.code, ca.stderr).toBe(0);
    writeFileSync(kh, ca.stdout);
    // alice's own login key; ssh picks up its certificate (id_ed25519-cert.pub) beside it.
    const keyFile = execFileSync('find', [homes.alice, '-name', 'id_ed25519'], { encoding: 'utf8' })
      .trim()
      .split('\n')[0]!;
    expect(keyFile).not.toBe('');
    const r = await tool('ssh', [
      '-F',
      '/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      `UserKnownHostsFile=${kh}`,
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-i',
      keyFile,
      '-p',
      String(sshdPort),
      `${login}@127.0.0.1`,
      'true',
    ]);
    // The host certificate was accepted (no host key complaint): only the login was refused.
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION/);
    expect(r.stderr).toContain('Permission denied');
    // Refused for its principals (it names the bare login, the node accepts only gatehouse-proxy:LOGIN),
    // not for its CA or its validity.
    expect(readFileSync(join(nodeDir, 'sshd.log'), 'utf8')).toMatch(PRINCIPAL_REFUSAL);
  });

  it('--renew keeps the host key, replaces the certificate and reloads the running sshd; sessions go on', async () => {
    const certFile = join(nodeDir, 'gatehouse_host_ed25519_key-cert.pub');
    const keyBefore = readFileSync(join(nodeDir, 'gatehouse_host_ed25519_key'), 'utf8');
    const certBefore = readFileSync(certFile, 'utf8');
    // A session open across the reload: it waits for a line, then answers.
    const live = spawn(process.execPath, [BIN, 'ssh', `${login}@web1`, 'echo ready; read x; echo got-$x'], {
      env: { ...process.env, GATEHOUSE_HOME: homes.alice },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let liveOut = '';
    live.stdout.on('data', (b) => {
      liveOut += b;
    });
    const liveExit = new Promise<number | null>((r) => live.once('exit', r));
    await waitFor(() => liveOut.includes('ready\n') || undefined, 'the live session to start', 15_000);
    // No login on the node: the host key and the still-valid certificate are the credential.
    const r = await gh('cron', [
      'nodes',
      'configure',
      'web1',
      '--renew',
      '--apply',
      '--sshd-config',
      sshdConfig,
      '--ttl',
      '48h',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/sshd \(pid \d+\) reloaded/);
    expect(readFileSync(join(nodeDir, 'gatehouse_host_ed25519_key'), 'utf8')).toBe(keyBefore);
    expect(readFileSync(certFile, 'utf8')).not.toBe(certBefore);
    const renewed = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
    expect(renewed).toMatch(/Valid: from \S+ to \S+/);
    expect(renewed).toMatch(/Principals:\s*\n\s+web1\n\s+web1\.agentless\n\s+127\.0\.0\.1\n/);
    // sshd re-executes on SIGHUP; wait until it listens again, then log in through the gateway.
    await waitFor(
      async () => {
        const s = await gh('alice', ['ssh', `${login}@web1`, 'echo', 'renewed']);
        return s.stdout === 'renewed\n' ? s : undefined;
      },
      'a session through the gateway after the reload',
      15_000,
    );
    live.stdin.end('still-here\n');
    expect(await liveExit).toBe(0);
    expect(liveOut).toBe('ready\ngot-still-here\n');
  });

  it('ca sign --host signs only the names the node owns', async () => {
    const pub = join(nodeDir, 'gatehouse_host_ed25519_key.pub');
    const ok = await gh('ops', [
      'ca',
      'sign',
      '--host',
      'web1',
      '--public-key',
      pub,
      '--format',
      'openssh',
      '--principals',
      'web1',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^ssh-ed25519-cert-v01@openssh\.com \S+/);
    const foreign = await gh('ops', [
      'ca',
      'sign',
      '--host',
      'web1',
      '--public-key',
      pub,
      '--principals',
      'web1,db1.example.com',
    ]);
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toContain('error: node "web1" does not own "db1.example.com"');
    expect(foreign.stderr).toMatch(
      /^hint: a node's host certificate may name only web1, web1\.agentless, 127\.0\.0\.1/m,
    );
    // alice's access role may not change nodes, so she gets no host certificate either.
    const denied = await gh('alice', ['ca', 'sign', '--host', 'web1', '--public-key', pub]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain('no role allows update on node');
  });

  it('refuses a node whose address does not resolve, and says what to fix', async () => {
    const add = await gh('ops', ['nodes', 'add', 'ghost', '--addr', 'ghost.invalid:22']);
    expect(add.code, add.stderr).toBe(0);
    const other = join(d.root, 'other_sshd_config');
    writeFileSync(other, 'Port 22\n');
    const r = await gh('ops', ['nodes', 'configure', 'ghost', '--apply', '--sshd-config', other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      'error: node "ghost" has the address ghost.invalid:22, and ghost.invalid does not resolve',
    );
    expect(r.stderr).toMatch(/^hint: .*gatehouse nodes add ghost --addr/m);
    expect(readFileSync(other, 'utf8')).toBe('Port 22\n');
  });

  it('--renew is refused once the node is removed, and for a host key the certificate does not name', async () => {
    const renew = () =>
      gh('cron', ['nodes', 'configure', 'web1', '--renew', '--apply', '--sshd-config', sshdConfig]);
    // Another key in place of the node's: its signature does not match the certificate.
    const keyFile = join(nodeDir, 'gatehouse_host_ed25519_key');
    const real = readFileSync(keyFile, 'utf8');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(nodeDir, 'impostor')]);
    writeFileSync(keyFile, readFileSync(join(nodeDir, 'impostor'), 'utf8'));
    const forged = await renew();
    writeFileSync(keyFile, real, { mode: 0o600 });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain('the signature is not by its host key');

    const rm = await gh('ops', ['nodes', 'rm', 'web1']);
    expect(rm.code, rm.stderr).toBe(0);
    const gone = await renew();
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('error: no node named "web1"');
  });
});
