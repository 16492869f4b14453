/**
 * SSH interoperability through the gateway with real clients: agent
 * forwarding (`ssh -A`, a real ssh-agent) to an OpenSSH node and to the
 * built-in node, the "only certificates" banner with an agent that offers
 * plain keys first, ssh-keyscan on the multiplexed port, the
 * server-sig-algs extension as OpenSSH reads it, and other clients users
 * have (ControlMaster, ProxyJump, rsync, git, PuTTY's plink).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { type Sshd, startSshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import type { NodeService } from '../src/node/index.js';
import { loginUser, runTool, sshJ, startEnv, startTestNode, type TestEnv, type UserFiles } from './peers.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';
const ONLY_CERTS = 'only Gatehouse certificates are accepted';

let env: TestEnv;
let alice: UserFiles;
let bob: UserFiles;
let node2: NodeService;
/** An OpenSSH node whose sshd refuses agent forwarding. */
let strict: Sshd;
const agents: ChildProcess[] = [];

async function events(type: string) {
  return (await env.gw.audit.search({ types: [type], limit: 500 })).events;
}

/** A real ssh-agent on a socket of its own, holding `keys` (added in this order: `ssh-add` adds a key's -cert.pub too). */
async function startAgent(name: string, keys: string[]): Promise<string> {
  const sock = path.join(env.dir, `agent-${name}.sock`);
  const child = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  agents.push(child);
  await waitFor(async () => existsSync(sock), `ssh-agent ${name} to listen`);
  for (const k of keys) await run('ssh-add', [k], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  return sock;
}

async function newKey(name: string): Promise<string> {
  const key = path.join(env.dir, name);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  return key;
}

/** SHA256 fingerprints (`SHA256:...`) in ssh-keygen -l / ssh-add -l output. */
function fingerprints(text: string): string[] {
  return [...text.matchAll(/SHA256:[A-Za-z0-9+/]+/g)].map((m) => m[0]);
}

async function fingerprint(pubFile: string): Promise<string> {
  return fingerprints((await run('ssh-keygen', ['-lf', pubFile])).stdout)[0]!;
}

/**
 * An ssh_config as a user's usually is: keys come from the agent (no
 * IdentityFile, IdentitiesOnly or BatchMode), keyboard-interactive is on
 * (OpenSSH's default). Only host verification is pinned.
 */
async function agentConfig(name: string, knownHosts: string): Promise<string> {
  const cfg = path.join(env.dir, `cfg-${name}`);
  await writeFile(
    cfg,
    [
      'Host *',
      // A file that does not exist: no default ~/.ssh/id_* key joins in.
      `  IdentityFile ${path.join(env.dir, 'no-such-key')}`,
      `  UserKnownHostsFile ${knownHosts}`,
      '  GlobalKnownHostsFile /dev/null',
      '  StrictHostKeyChecking yes',
      '  ConnectTimeout 20',
      '  LogLevel INFO',
      '',
    ].join('\n'),
  );
  return cfg;
}

beforeAll(async () => {
  env = await startEnv();
  const { gw } = env;
  const role = (name: string, agent: boolean) =>
    [
      'kind: role',
      `name: ${name}`,
      'allow:',
      `  logins: [${env.login}]`,
      '  node_labels: { env: dev }',
      'options:',
      '  port_forwarding: true',
      `  agent_forwarding: ${agent}`,
      '',
    ].join('\n');
  await gw.admin.putRole(role('agentfwd', true));
  await gw.admin.putRole(role('noagent', false));
  await gw.admin.createUser({ name: 'alice', roles: ['agentfwd'], password: PASSWORD });
  await gw.admin.createUser({ name: 'bob', roles: ['noagent'], password: PASSWORD });
  await gw.nodes.add({ name: 'node1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } }, 'test');
  node2 = await startTestNode(env, 'node2');
  const sdir = path.join(env.dir, 'strict');
  await mkdir(sdir);
  strict = await startSshd({
    dir: sdir,
    userCaKeys: gw.exportCa('sshd'),
    hostKey: path.join(env.dir, 'ssh_host_ed25519_key'),
    hostCert: path.join(env.dir, 'ssh_host_ed25519_key-cert.pub'),
    extraConfig: ['PrintMotd no', 'PrintLastLog no', 'AllowAgentForwarding no'],
  });
  // The host certificate names node1 and 127.0.0.1; the gateway accepts the address too.
  await gw.nodes.add({ name: 'strict1', addr: `127.0.0.1:${strict.port}`, labels: { env: 'dev' } }, 'test');
  alice = await loginUser(env, 'alice', PASSWORD);
  bob = await loginUser(env, 'bob', PASSWORD);
}, 60_000);

afterAll(async () => {
  for (const a of agents) a.kill();
  await node2?.close();
  await strict?.stop();
  await env?.close();
});

describe('ssh -A: agent forwarding through the gateway', () => {
  let agentSock: string;
  let agentKeyFp: string;
  const LIST = 'ssh-add -l; echo "SOCK=[$SSH_AUTH_SOCK]"';

  beforeAll(async () => {
    const k = await newKey('forwarded_key');
    agentKeyFp = await fingerprint(`${k}.pub`);
    agentSock = await startAgent('fwd', [k]);
  });

  it('an OpenSSH node lists the key of the ssh-agent on the user side; granted is audited', async () => {
    const r = await sshJ(env, alice, `${env.login}@node1`, ['-A', '--', LIST], {
      env: { SSH_AUTH_SOCK: agentSock },
    });
    expect(r.stderr).not.toContain('agent forwarding disabled');
    expect(r.code).toBe(0);
    expect(fingerprints(r.stdout.toString())).toEqual([agentKeyFp]);
    expect(r.stdout.toString()).toMatch(/SOCK=\[\/tmp\/ssh-\S+\/agent\.\d+\]/);
    const ev = await waitFor(
      async () => (await events('agent_forward')).find((e) => e.user === 'alice' && e.server === 'node1'),
      'agent_forward event',
    );
    expect(ev).toMatchObject({ success: true, code: 'GH2109I', login: env.login });
  });

  it('the built-in node does the same, in a pty shell too', async () => {
    const r = await sshJ(env, alice, `${env.login}@node2`, ['-A', '--', LIST], {
      env: { SSH_AUTH_SOCK: agentSock },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fingerprints(r.stdout.toString())).toEqual([agentKeyFp]);
    expect(r.stdout.toString()).toMatch(/SOCK=\[\/tmp\/gatehouse-agent-\w+\/agent\.sock\]/);
    const tty = await sshJ(env, alice, `${env.login}@node2`, ['-A', '-tt'], {
      env: { SSH_AUTH_SOCK: agentSock },
      input: 'ssh-add -l; exit\n',
    });
    expect(tty.code).toBe(0);
    expect(fingerprints(tty.stdout.toString())).toContain(agentKeyFp);
  });

  it('a role with agent_forwarding false: the user reads why, the node has no SSH_AUTH_SOCK, refused is audited', async () => {
    for (const node of ['node1', 'node2']) {
      const r = await sshJ(env, bob, `${env.login}@${node}`, ['-A', '--', LIST], {
        env: { SSH_AUTH_SOCK: agentSock },
      });
      expect(r.stderr).toContain(
        'Gatehouse: agent forwarding disabled: your roles do not allow it (role option agent_forwarding)',
      );
      expect(r.stdout.toString()).toContain('SOCK=[]');
      expect(fingerprints(r.stdout.toString())).toEqual([]);
    }
    const ev = await waitFor(
      async () => (await events('agent_forward')).find((e) => e.user === 'bob'),
      'agent_forward refusal event',
    );
    expect(ev).toMatchObject({ success: false, code: 'GH2109W' });
    expect('error' in ev && ev.error).toContain('agent_forwarding');
  });

  it('a node whose sshd refuses agent forwarding: the session still runs and the user reads why', async () => {
    const r = await sshJ(env, alice, `${env.login}@strict1`, ['-A', '--', LIST], {
      env: { SSH_AUTH_SOCK: agentSock },
    });
    expect(r.stderr).toContain('agent forwarding disabled: node "strict1" refused agent forwarding');
    expect(r.stdout.toString()).toContain('SOCK=[]');
    const ev = await waitFor(
      async () => (await events('agent_forward')).find((e) => e.server === 'strict1'),
      'agent_forward event for strict1',
    );
    expect(ev).toMatchObject({ success: false, user: 'alice' });
  });

  it('without -A nothing is forwarded and nothing is said', async () => {
    const r = await sshJ(env, alice, `${env.login}@node1`, ['--', LIST], {
      env: { SSH_AUTH_SOCK: agentSock },
    });
    // ssh-add's own complaint on the node, and not a word from the gateway.
    expect(r.stderr).toBe('Could not open a connection to your authentication agent.\n');
    expect(r.stdout.toString()).toContain('SOCK=[]');
  });
});

describe('the "only certificates" banner', () => {
  let plain: string;

  beforeAll(async () => {
    plain = await newKey('plain_key');
  });

  it('is not shown when the agent offers plain keys first and then the certificate (login works)', async () => {
    // Agent order: a plain key, alice's key, alice's certificate.
    const sock = await startAgent('mixed', [plain, alice.key]);
    const listed = await runTool('ssh-add', ['-l'], { env: { SSH_AUTH_SOCK: sock } });
    expect(listed.stdout.toString().trim().split('\n')).toHaveLength(3);
    const cfg = await agentConfig('mixed', alice.knownHosts);
    const r = await runTool(
      'ssh',
      ['-F', cfg, '-J', `alice@127.0.0.1:${env.port}`, `${env.login}@node1`, 'echo in'],
      { env: { SSH_AUTH_SOCK: sock } },
    );
    expect(r.stdout.toString()).toBe('in\n');
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain(ONLY_CERTS);
  });

  it('is shown when authentication fails as a whole (only a plain key)', async () => {
    const sock = await startAgent('plain', [plain]);
    const cfg = await agentConfig('plain', alice.knownHosts);
    const r = await runTool('ssh', ['-F', cfg, '-p', String(env.port), 'alice@127.0.0.1', 'true'], {
      env: { SSH_AUTH_SOCK: sock },
    });
    expect(r.code).toBe(255);
    expect(r.stderr).toContain(ONLY_CERTS);
    expect(r.stderr).toContain('Permission denied (publickey)');
  });
});

describe('ssh-keyscan and server-sig-algs on the multiplexed port', () => {
  it('ssh-keyscan gets the proxy host key (the one ssh verifies) and its certificate from the host CA', async () => {
    const scan = await runTool('ssh-keyscan', ['-t', 'ed25519', '-p', String(env.port), '127.0.0.1'], {
      timeoutMs: 20_000,
    });
    expect(scan.code).toBe(0);
    const line = scan.stdout
      .toString()
      .split('\n')
      .find((l) => l.startsWith(`[127.0.0.1]:${env.port} ssh-ed25519 `));
    expect(line).toBeDefined();
    const scanned = path.join(env.dir, 'scanned.pub');
    await writeFile(scanned, `${line!.split(' ').slice(1).join(' ')}\n`);
    // The key OpenSSH verified on a real login through the same port.
    const v = await runTool('ssh', [
      '-v',
      '-F',
      alice.config,
      '-p',
      String(env.port),
      'alice@127.0.0.1',
      'true',
    ]);
    const shown =
      /Server host certificate: ssh-ed25519-cert-v01@openssh\.com (SHA256:\S+), .*CA ssh-ed25519 (SHA256:[^\s,]+)/.exec(
        v.stderr,
      );
    expect(shown).not.toBeNull();
    expect(await fingerprint(scanned)).toBe(shown![1]!.replace(/,$/, ''));
    // -c: the certificate, signed by the host CA users trust.
    const certScan = await runTool('ssh-keyscan', ['-c', '-p', String(env.port), '127.0.0.1'], {
      timeoutMs: 20_000,
    });
    const certLine = certScan.stdout
      .toString()
      .split('\n')
      .find((l) => l.includes('ssh-ed25519-cert-v01@openssh.com'));
    expect(certLine).toBeDefined();
    const certFile = path.join(env.dir, 'scanned-cert.pub');
    // ssh-keyscan -c prints the certificate line without the host in front.
    await writeFile(certFile, `${certLine!.slice(certLine!.indexOf('ssh-ed25519-cert-v01'))}\n`);
    const info = (await run('ssh-keygen', ['-L', '-f', certFile])).stdout;
    const hostCa = path.join(env.dir, 'host-ca.pub');
    await writeFile(hostCa, `${env.gw.authorities.get('host')[0]!.sshPublicKey}\n`);
    expect(info).toContain(`Signing CA: ED25519 ${await fingerprint(hostCa)}`);
    // A normal login through the same port still works.
    const ok = await sshJ(env, alice, `${env.login}@node1`, ['--', 'echo after-scan']);
    expect(ok.stdout.toString()).toBe('after-scan\n');
  });

  it('a client that hangs up after the banner without a word is not audited as malformed', async () => {
    const malformed = async () =>
      (await events('ssh.reject')).filter((e) => 'reason' in e && e.reason === 'malformed').length;
    const before = await malformed();
    const banner = await new Promise<string>((resolve, reject) => {
      const s = net.connect(env.port, '127.0.0.1');
      let got = '';
      s.on('data', (d) => {
        got += d;
        if (got.includes('\n')) s.end();
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
    });
    expect(banner).toMatch(/^SSH-2\.0-Gatehouse\r\n/);
    // A real session after it: its audit events are written after any the hang-up caused.
    const ok = await sshJ(env, alice, `${env.login}@node1`, ['--', 'echo after']);
    expect(ok.stdout.toString()).toBe('after\n');
    expect(await malformed()).toBe(before);
  });

  it('server-sig-algs lists each signature algorithm on its own (ssh -vvv)', async () => {
    const v = await runTool('ssh', [
      '-vvv',
      '-F',
      alice.config,
      '-p',
      String(env.port),
      'alice@127.0.0.1',
      'true',
    ]);
    const m = /server-sig-algs=<([^>]*)>/.exec(v.stderr);
    expect(m).not.toBeNull();
    const algs = m![1]!.split(',');
    const known = [
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
      'ecdsa-sha2-nistp384',
      'ecdsa-sha2-nistp521',
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-dss',
    ];
    expect(algs.filter((a) => !known.includes(a))).toEqual([]);
    expect(algs).toContain('ecdsa-sha2-nistp521');
    expect(algs).toContain('rsa-sha2-512');
  });
});

describe('other clients through the gateway', () => {
  /** `ssh` options that reach node1 through the gateway, for tools that take an ssh command. */
  const jump = () => `ssh -F ${alice.config} -J alice@127.0.0.1:${env.port}`;

  it('ProxyJump and ProxyCommand ssh -W', async () => {
    const pj = await runTool('ssh', [
      '-F',
      alice.config,
      '-o',
      `ProxyJump=alice@127.0.0.1:${env.port}`,
      `${env.login}@node1`,
      'echo via-proxyjump',
    ]);
    expect(pj.stdout.toString()).toBe('via-proxyjump\n');
    const pc = await runTool('ssh', [
      '-F',
      alice.config,
      '-o',
      `ProxyCommand=ssh -F ${alice.config} -p ${env.port} -W %h:%p alice@127.0.0.1`,
      `${env.login}@node1`,
      'echo via-proxycommand',
    ]);
    expect(pc.stderr).toBe('');
    expect(pc.stdout.toString()).toBe('via-proxycommand\n');
  });

  it('ControlMaster multiplexing (as Ansible uses it): several commands over one connection', async () => {
    const ctl = path.join(env.dir, 'ctl-%C');
    // ControlPath, not -S: scp reads -S as the ssh program.
    const base = ['-F', alice.config, '-J', `alice@127.0.0.1:${env.port}`, '-o', `ControlPath=${ctl}`];
    const aliceStarts = async () =>
      (await events('session.start')).filter((e) => e.user === 'alice' && e.server === 'node1').length;
    const before = await aliceStarts();
    const master = await runTool('ssh', [
      ...base,
      '-o',
      'ControlMaster=auto',
      '-o',
      'ControlPersist=30s',
      `${env.login}@node1`,
      'echo first',
    ]);
    expect(master.stdout.toString()).toBe('first\n');
    try {
      const check = await runTool('ssh', [...base, '-O', 'check', `${env.login}@node1`]);
      expect(check.stderr).toContain('Master running');
      for (const n of [2, 3]) {
        const r = await runTool('ssh', [
          ...base,
          '-o',
          'ControlMaster=no',
          `${env.login}@node1`,
          `echo again-${n}`,
        ]);
        expect(r.stdout.toString()).toBe(`again-${n}\n`);
      }
      const copy = path.join(env.dir, 'over-mux.txt');
      await writeFile(copy, 'sent over the master\n');
      const scp = await runTool('scp', [
        ...base,
        '-o',
        'ControlMaster=no',
        copy,
        `${env.login}@node1:/tmp/gh-mux-${env.login}`,
      ]);
      expect(scp.stderr).toBe('');
      expect(scp.code).toBe(0);
      expect(await readFile(`/tmp/gh-mux-${env.login}`, 'utf8')).toBe('sent over the master\n');
      await rm(`/tmp/gh-mux-${env.login}`, { force: true });
    } finally {
      await runTool('ssh', [...base, '-O', 'exit', `${env.login}@node1`]);
    }
    // One authorized connection to the node carried all of it.
    expect(await aliceStarts()).toBe(before + 1);
  });

  it('rsync over ssh, both ways', async () => {
    const src = path.join(env.dir, 'rsync-src');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'a.txt'), 'alpha\n');
    await writeFile(path.join(src, 'b.bin'), Buffer.alloc(300_000, 7));
    const remote = `/tmp/gh-rsync-${env.login}`;
    try {
      const up = await runTool('rsync', ['-a', '-e', jump(), `${src}/`, `${env.login}@node1:${remote}/`]);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      expect(await readFile(path.join(remote, 'a.txt'), 'utf8')).toBe('alpha\n');
      const back = path.join(env.dir, 'rsync-back');
      const down = await runTool('rsync', ['-a', '-e', jump(), `${env.login}@node1:${remote}/`, `${back}/`]);
      expect(down.code).toBe(0);
      expect((await readFile(path.join(back, 'b.bin'))).equals(Buffer.alloc(300_000, 7))).toBe(true);
    } finally {
      await rm(remote, { recursive: true, force: true });
    }
  });

  it('git clone and push over ssh', async () => {
    const repo = `/tmp/gh-git-${env.login}.git`;
    await run('git', ['init', '-q', '--bare', repo]);
    await run('chown', ['-R', `${env.login}:`, repo]);
    const gitEnv = {
      GIT_SSH_COMMAND: jump(),
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@x',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@x',
    };
    const work = path.join(env.dir, 'git-work');
    try {
      const clone = await runTool('git', ['clone', '-q', `${env.login}@node1:${repo}`, work], {
        env: gitEnv,
      });
      expect(clone.code).toBe(0);
      await writeFile(path.join(work, 'README'), 'pushed through the gateway\n');
      await run('git', ['-C', work, 'add', 'README']);
      await run('git', ['-C', work, 'commit', '-qm', 'first'], { env: { ...process.env, ...gitEnv } });
      const push = await runTool('git', ['-C', work, 'push', '-q', 'origin', 'HEAD'], { env: gitEnv });
      expect(push.stderr).toBe('');
      expect(push.code).toBe(0);
      const again = path.join(env.dir, 'git-again');
      const clone2 = await runTool('git', ['clone', '-q', `${env.login}@node1:${repo}`, again], {
        env: gitEnv,
      });
      expect(clone2.code).toBe(0);
      expect(await readFile(path.join(again, 'README'), 'utf8')).toBe('pushed through the gateway\n');
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
  });

  it("PuTTY's plink with the certificate in its key file, through the gateway with -proxycmd", async () => {
    const ppk = path.join(env.dir, 'alice.ppk');
    await run('puttygen', [alice.key, '--certificate', alice.cert, '-o', ppk]);
    // The proxy's host key (the same one behind every host certificate it presents).
    const scan = await runTool('ssh-keyscan', ['-t', 'ed25519', '-p', String(env.port), '127.0.0.1']);
    const hostKeyFile = path.join(env.dir, 'proxy-host.pub');
    await writeFile(hostKeyFile, `${scan.stdout.toString().trim().split(' ').slice(1).join(' ')}\n`);
    const fp = await fingerprint(hostKeyFile);
    const plink = ['-batch', '-ssh', '-noagent', '-i', ppk, '-hostkey', fp];
    const jumpCmd = ['plink', ...plink, '-P', String(env.port), '-nc', 'node1:22', 'alice@127.0.0.1'].join(
      ' ',
    );
    const r = await runTool('plink', [
      ...plink,
      '-proxycmd',
      jumpCmd,
      `${env.login}@node1`,
      'echo via-plink',
    ]);
    expect(r.stdout.toString()).toBe('via-plink\n');
    expect(r.code).toBe(0);
    // pscp (SFTP) the same way.
    const local = path.join(env.dir, 'pscp.txt');
    await writeFile(local, 'copied by pscp\n');
    const remote = `/tmp/gh-pscp-${env.login}`;
    try {
      const cp = await runTool('pscp', [
        ...plink,
        '-proxycmd',
        jumpCmd,
        local,
        `${env.login}@node1:${remote}`,
      ]);
      expect(cp.stderr).toBe('');
      expect(cp.code).toBe(0);
      expect(await readFile(remote, 'utf8')).toBe('copied by pscp\n');
    } finally {
      await rm(remote, { force: true });
    }
  });
});
