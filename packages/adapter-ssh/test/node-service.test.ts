import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { systemClock } from '@gatehouse/core';
import pty from 'node-pty';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway, waitFor } from '../../core/test/helpers.js';
import {
  generateHostKey,
  type NodeService,
  type NodeSessionEvent,
  startNodeService,
} from '../src/node/index.js';
import {
  type ClientKey,
  certify,
  createUnixUser,
  newClientKey,
  runSsh,
  sshArgs,
  type TestUnixUser,
} from './node-helpers.js';

let tg: TestGateway;
let node: NodeService;
let dir: string;
let knownHosts: string;
let unix: TestUnixUser;
let key: ClientKey;
const audit = new MemoryAuditLog();
const events: NodeSessionEvent[] = [];

const ssh = (login: string, k: ClientKey, extra: string[], input?: string) =>
  runSsh([...extra, ...sshArgs({ port: node.port, knownHosts, key: k, login })], input);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-node-'));
  unix = createUnixUser();
  tg = await startGateway();
  const hostKey = generateHostKey('node1');
  const now = Date.now();
  const hostCert = await tg.gw.authorities.issueSshHostCert({
    publicKey: hostKey.publicKey,
    keyId: 'node1',
    principals: ['node1'],
    validAfter: new Date(now),
    validBefore: new Date(now + 3600_000),
  });
  node = await startNodeService({
    host: '127.0.0.1',
    port: 0,
    hostKey: hostKey.privateKey,
    hostCert: hostCert.cert,
    trustedUserCaKeys: () => tg.gw.authorities.get('user').map((k) => k.sshPublicKey),
    clock: systemClock,
    audit,
    nodeName: 'node1',
    labels: { env: 'test' },
    onSession: (e) => events.push(e),
  });
  knownHosts = path.join(dir, 'known_hosts');
  await writeFile(knownHosts, tg.gw.exportCa('known_hosts', { hosts: 'node1' }));
  key = await newClientKey(dir, 'alice');
  await certify(tg.gw, key, { principals: [unix.name, 'root'] });
});

afterAll(async () => {
  await node?.close();
  await tg?.close();
  unix?.remove();
  await rm(dir, { recursive: true, force: true });
});

describe('built-in node service with the real OpenSSH client', () => {
  it('runs a command with its exit code and separate stdout and stderr', async () => {
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key, login: unix.name }),
      'echo out; echo err >&2; exit 7',
    ]);
    expect(res.stderr).toContain('err\n');
    expect(res.stderr).not.toContain('out');
    expect(res.stdout).toBe('out\n');
    expect(res.code).toBe(7);
  });

  it('runs commands as the Unix login: uid, gid, supplementary groups, HOME, cwd, environment', async () => {
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key, login: unix.name }),
      'id -u; id -G; echo "H=$HOME U=$USER L=$LOGNAME S=$SHELL"; pwd; test -t 0 && echo tty || echo notty',
    ]);
    expect(res.code).toBe(0);
    const [uid, groups, envLine, cwd, tty] = res.stdout.trim().split('\n');
    expect(Number(uid)).toBe(unix.uid);
    expect(groups?.split(' ').map(Number)).toContain(unix.gid);
    expect(envLine).toBe(`H=${unix.home} U=${unix.name} L=${unix.name} S=/bin/bash`);
    expect(cwd).toBe(unix.home);
    expect(tty).toBe('notty');
  });

  it('runs root sessions as root', async () => {
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key, login: 'root' }),
      'id -u; echo $HOME',
    ]);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('0\n/root\n');
  });

  it('gives an interactive login shell in a real PTY (ssh -tt with scripted input)', async () => {
    const script = [
      'shopt -q login_shell && echo LOGIN=yes',
      'echo UID=$(id -u) HOME=$HOME',
      'id -Gn',
      'tty',
      'exit 3',
      '',
    ].join('\n');
    const res = await ssh(unix.name, key, ['-tt'], script);
    expect(res.stdout).toContain('LOGIN=yes');
    expect(res.stdout).toContain(`UID=${unix.uid} HOME=${unix.home}`);
    expect(res.stdout).toMatch(new RegExp(`\\b${unix.group}\\b`));
    expect(res.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(res.code).toBe(3);
    const start = events.find((e) => e.type === 'start' && e.kind === 'shell' && e.login === unix.name);
    expect(start).toMatchObject({ user: 'alice', pty: { term: expect.any(String) } });
  });

  it('resizes the PTY on window-change (client is real ssh in a node-pty terminal)', async () => {
    const term = pty.spawn(
      'ssh',
      ['-tt', ...sshArgs({ port: node.port, knownHosts, key, login: unix.name })],
      {
        name: 'xterm',
        cols: 80,
        rows: 24,
        env: { ...process.env, TERM: 'xterm' } as Record<string, string>,
      },
    );
    let out = '';
    term.onData((d) => {
      out += d;
    });
    const exited = new Promise<number>((resolve) => term.onExit((e) => resolve(e.exitCode)));
    try {
      term.write('PS1=READY\\$\\ ; echo SIZE1=$(stty size)\r');
      await waitFor(() => /SIZE1=24 80/.test(out) || undefined, 'the first stty size', 20_000);
      term.resize(132, 40);
      // The window-change travels asynchronously: ask until the shell sees it.
      await waitFor(
        async () => {
          term.write('echo SIZE2=$(stty size)\r');
          await new Promise((r) => setTimeout(r, 200));
          return /SIZE2=40 132/.test(out) || undefined;
        },
        'the resized stty size',
        20_000,
      );
      term.write('exit 0\r');
      expect(await exited).toBe(0);
    } finally {
      term.kill();
    }
  });

  it('passes allowed env requests and refuses others', async () => {
    const res = await runSsh([
      '-o',
      'SetEnv=LC_GHTEST=ok GATEHOUSE_TRACE=1 EVIL_VAR=bad',
      ...sshArgs({ port: node.port, knownHosts, key, login: unix.name }),
      'echo "[$LC_GHTEST] [$GATEHOUSE_TRACE] [$EVIL_VAR]"',
    ]);
    expect(res.code).toBe(0);
    expect(res.stdout).toBe('[ok] [1] []\n');
    await waitFor(
      () => audit.events.find((e) => e.type === 'access.denied' && e.reason.includes('EVIL_VAR')),
      'the env refusal audit event',
    );
  });

  it('refuses a login the certificate does not name', async () => {
    const other = await newClientKey(dir, 'narrow');
    await certify(tg.gw, other, { principals: ['root'], user: 'bob' });
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key: other, login: unix.name }),
      'true',
    ]);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain(`certificate is not valid for "${unix.name}"`);
    expect(res.stderr).toContain('Permission denied');
    await waitFor(
      () => audit.events.find((e) => e.type === 'access.denied' && e.user === 'bob' && e.login === unix.name),
      'the refusal audit event',
    );
  });

  it('refuses an expired certificate', async () => {
    const old = await newClientKey(dir, 'old');
    const now = Date.now();
    await certify(tg.gw, old, {
      principals: [unix.name],
      validAfter: new Date(now - 7200_000),
      validBefore: new Date(now - 3600_000),
    });
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key: old, login: unix.name }),
      'true',
    ]);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('certificate expired');
  });

  it('refuses a certificate from a foreign CA', async () => {
    const ca = path.join(dir, 'foreign_ca');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    const k = await newClientKey(dir, 'mallory');
    execFileSync('ssh-keygen', [
      '-q',
      '-s',
      ca,
      '-I',
      'mallory',
      '-n',
      unix.name,
      '-V',
      '-5m:+1h',
      `${k.keyPath}.pub`,
    ]);
    const res = await runSsh([...sshArgs({ port: node.port, knownHosts, key: k, login: unix.name }), 'true']);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('not signed by a trusted Gatehouse CA');
  });

  it('refuses a plain key without a certificate', async () => {
    const k = await newClientKey(dir, 'plain');
    const res = await runSsh([
      '-F',
      '/dev/null',
      '-p',
      String(node.port),
      '-i',
      k.keyPath,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'HostKeyAlias=node1',
      '-l',
      unix.name,
      '127.0.0.1',
      'true',
    ]);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('Permission denied (publickey)');
  });

  it('refuses a PTY when the certificate lacks permit-pty', async () => {
    const k = await newClientKey(dir, 'nopty');
    await certify(tg.gw, k, { principals: [unix.name], permitPty: false, user: 'carol' });
    // OpenSSH treats a refused PTY as fatal when -t/-tt asked for one.
    const res = await runSsh([
      '-tt',
      ...sshArgs({ port: node.port, knownHosts, key: k, login: unix.name }),
      'tty',
    ]);
    expect(res.stderr).toContain('PTY allocation request failed');
    expect(res.code).toBe(255);
    await waitFor(
      () => events.find((e) => e.type === 'refused' && e.user === 'carol' && e.request === 'pty-req'),
      'the pty refusal',
    );
    // The same certificate still runs commands without a PTY.
    const plain = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key: k, login: unix.name }),
      'tty; exit 0',
    ]);
    expect(plain.stdout).toContain('not a tty');
    expect(plain.code).toBe(0);
  });

  it('refuses an unknown Unix user with a clear message', async () => {
    const k = await newClientKey(dir, 'ghost');
    await certify(tg.gw, k, { principals: ['ghnosuchuser'] });
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts, key: k, login: 'ghnosuchuser' }),
      'true',
    ]);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('there is no Unix user "ghnosuchuser" on this node');
  });

  it('is refused by a client that trusts another host CA (StrictHostKeyChecking=yes)', async () => {
    const otherCa = path.join(dir, 'other_host_ca');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherCa]);
    const wrong = path.join(dir, 'known_hosts_wrong');
    await writeFile(wrong, `@cert-authority node1 ${(await readFile(`${otherCa}.pub`, 'utf8')).trim()}\n`);
    const res = await runSsh([
      ...sshArgs({ port: node.port, knownHosts: wrong, key, login: unix.name }),
      'true',
    ]);
    expect(res.code).toBe(255);
    expect(res.stderr).toContain('Host key verification failed');
    // The same client with the cluster's host CA gets in: the node presented a certificate, not just a key.
    const ok = await runSsh([...sshArgs({ port: node.port, knownHosts, key, login: unix.name }), 'true']);
    expect(ok.code).toBe(0);
  });
});

describe('built-in node service signals (ssh2 client: OpenSSH cannot send signal requests)', () => {
  async function connect(login: string): Promise<ssh2.Client> {
    const parsed = ssh2.utils.parseKey(await readFile(key.keyPath));
    if (parsed instanceof Error) throw parsed;
    const k = (Array.isArray(parsed) ? parsed[0] : parsed) as ssh2.ParsedKey & { certificate?: Buffer };
    // The adapter's ssh2 patch offers `certificate` as a -cert-v01 key.
    const certLine = (await readFile(key.certPath, 'utf8')).trim();
    k.certificate = Buffer.from(certLine.split(' ')[1] as string, 'base64');
    const c = new ssh2.Client();
    // The typings list authHandler as base AuthMethods; the key is the public-key method's.
    const publicKey: ssh2.PublicKeyAuthMethod = { type: 'publickey', username: login, key: k };
    await new Promise<void>((resolve, reject) => {
      c.once('ready', () => resolve());
      c.once('error', reject);
      c.connect({
        host: '127.0.0.1',
        port: node.port,
        username: login,
        authHandler: [publicKey],
        hostVerifier: () => true,
      });
    });
    return c;
  }

  it('delivers a signal request to the command, which ends with exit-signal', async () => {
    const c = await connect(unix.name);
    try {
      const result = await new Promise<{ code: number | null; signal?: string }>((resolve, reject) => {
        c.exec('echo started; sleep 100; echo never', (err, ch) => {
          if (err) return reject(err);
          let out = '';
          ch.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.includes('started')) ch.signal('TERM');
          });
          ch.on('exit', (code: number | null, signal?: string) => resolve({ code, signal }));
        });
      });
      // ssh2's client reports exit-signal names with the SIG prefix.
      expect(result.signal).toBe('SIGTERM');
      expect(result.code).toBe(null);
    } finally {
      c.end();
    }
  });

  it('refuses port forwarding without permit-port-forwarding', async () => {
    const c = await connect(unix.name);
    try {
      const err = await new Promise<Error | undefined>((resolve) => {
        c.forwardOut('127.0.0.1', 0, '127.0.0.1', tg.port, (e) => resolve(e ?? undefined));
      });
      expect(err?.message).toMatch(/prohibited|denied|refused|failure/i);
    } finally {
      c.end();
    }
  });
});
