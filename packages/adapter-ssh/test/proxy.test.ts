/**
 * The SSH proxy end to end with the real OpenSSH client and a real sshd:
 * `ssh -J` through the gateway, exec and pty shells, recording, RBAC both
 * ways, certificate checks, host-key verification through @cert-authority,
 * and bad input that must not hurt other sessions.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RecordingEvent } from '@gatehouse/audit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../core/test/helpers.js';
import { loginUser, runTool, sshConfig, sshJ, startEnv, type TestEnv, type UserFiles } from './peers.js';

const run = promisify(execFile);
const PASSWORD = 'correct horse battery staple';

let env: TestEnv;
let alice: UserFiles;

async function events(type: string) {
  return (await env.gw.audit.search({ types: [type], limit: 500 })).events;
}

beforeAll(async () => {
  env = await startEnv({ adapter: { handshakeTimeoutMs: 3_000 } });
  const { gw } = env;
  await gw.admin.putRole(
    [
      'kind: role',
      'name: dev',
      'allow:',
      `  logins: [${env.login}]`,
      '  node_labels: { env: [dev, prod] }',
      'deny:',
      '  node_labels: { env: prod }',
      'options:',
      '  port_forwarding: true',
      '',
    ].join('\n'),
  );
  await gw.admin.createUser({ name: 'alice', roles: ['dev'], password: PASSWORD });
  await gw.nodes.add({ name: 'node1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'dev' } }, 'test');
  await gw.nodes.add({ name: 'prod1', addr: `127.0.0.1:${env.sshd.port}`, labels: { env: 'prod' } }, 'test');
  alice = await loginUser(env, 'alice', PASSWORD);
}, 60_000);

afterAll(async () => {
  await env?.close();
});

describe('ssh -J through the gateway to an OpenSSH node', () => {
  it('runs a command; output and exit status come back; the command and exit code are audited', async () => {
    const r2 = await sshJ(env, alice, `${env.login}@node1`, [
      '--',
      'echo hello-$((40+2)); echo err >&2; exit 3',
    ]);
    expect(r2.stdout.toString()).toBe('hello-42\n');
    expect(r2.stderr).toContain('err');
    expect(r2.code).toBe(3);
    const exec = await waitFor(
      async () => (await events('exec')).find((e) => 'command' in e && e.command.includes('hello')),
      'exec event',
    );
    expect(exec).toMatchObject({
      user: 'alice',
      login: env.login,
      server: 'node1',
      exit_code: 3,
      code: 'GH2102I',
    });
    const start = (await events('session.start')).find((e) => e.session_id === exec.session_id);
    expect(start).toMatchObject({ success: true, server: 'node1', login: env.login });
    await waitFor(
      async () => (await events('session.end')).find((e) => e.session_id === exec.session_id),
      'session.end',
    );
    // The gateway's upstream certificate was minted for the login only.
    const certs = (await events('cert.create')).filter(
      (e) => 'cert_type' in e && e.cert_type === 'ssh-user' && e.principals?.[0] === env.login,
    );
    expect(certs.length).toBeGreaterThan(0);
  });

  it('verifies both hops against @cert-authority with StrictHostKeyChecking=yes (no prompt, no unknown key)', async () => {
    const r = await sshJ(env, alice, `${env.login}@node1`, ['-v', '--', 'true']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Server host certificate: ssh-ed25519-cert-v01@openssh\.com/);
    expect(r.stderr).toMatch(
      /Host '\[127\.0\.0\.1\]:\d+' is known and matches the ED25519-CERT host certificate/,
    );
    expect(r.stderr).toMatch(/Host 'node1' is known and matches the ED25519-CERT host certificate/);
  });

  it('relays an interactive pty shell and records exactly the bytes ssh printed', async () => {
    const r = await sshJ(env, alice, `${env.login}@node1`, ['-tt'], {
      input: 'stty -echo; echo MARK-$((6*7)); printf "\\033[1mbold\\033[0m\\n"; exit 0\n',
    });
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toContain('MARK-42');
    const sid = (await env.recordings.list()).find((m) => m.user === 'alice')!.session_id;
    const meta = await waitFor(async () => {
      const m = await env.recordings.get(sid);
      return m?.ended ? m : undefined;
    }, 'the recording to end');
    expect(meta).toMatchObject({ kind: 'ssh', user: 'alice', login: env.login, server: 'node1' });
    const out: Buffer[] = [];
    const kinds = new Set<string>();
    for await (const e of env.recordings.read(sid) as AsyncIterable<RecordingEvent>) {
      kinds.add(e.type);
      if (e.type === 'output') out.push(Buffer.from(e.data));
    }
    expect(Buffer.concat(out).equals(r.stdout)).toBe(true);
    expect(kinds.has('output')).toBe(true);
    const end = await waitFor(
      async () => (await events('session.end')).find((e) => e.session_id === sid),
      'session.end',
    );
    expect(end).toMatchObject({ interactive: true, recorded: true });
  });
});

describe('RBAC through the gateway (core decides; ssh shows why)', () => {
  it('refuses a login the role does not allow, with the reason on stderr', async () => {
    const r = await sshJ(env, alice, 'nobody@node1', ['--', 'true']);
    expect(r.code).toBe(255);
    // Refused by the certificate check, before any role decision: the certificate names other logins.
    expect(r.stderr).toContain('certificate is not valid for "nobody"');
    const refused = (await events('ssh.reject')).find(
      (e) => e.type === 'ssh.reject' && e.error.includes('not valid for "nobody"'),
    );
    expect(refused).toMatchObject({ user: 'alice', server: 'node1', reason: 'auth_failed' });
  });

  it('refuses a node whose labels a role denies', async () => {
    const r = await sshJ(env, alice, `${env.login}@prod1`, ['--', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('role "dev" denies node_labels');
  });

  it('refuses an unknown node at the jump, with the reason', async () => {
    const r = await sshJ(env, alice, `${env.login}@nosuch`, ['--', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/node "nosuch" is not registered/);
    expect((await events('ssh.reject')).some((e) => 'reason' in e && e.reason === 'unknown_node')).toBe(true);
  });

  it('refuses a plain key with a message saying to log in, once the client has no key left', async () => {
    const plain = path.join(env.dir, 'plain_cfg');
    // The banner comes with the client's last resort, keyboard-interactive (on by default;
    // BatchMode turns it off, and then only "Permission denied" is printed).
    await writeFile(
      plain,
      sshConfig({ key: alice.key, cert: '/dev/null', knownHosts: alice.knownHosts })
        .replace('  BatchMode yes\n', '')
        .replace('  KbdInteractiveAuthentication no\n', ''),
    );
    const r = await runTool('ssh', ['-F', plain, '-p', String(env.port), 'alice@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('only Gatehouse certificates are accepted');
  });

  it('refuses an expired certificate and one from an untrusted CA', async () => {
    const expired = await env.gw.authorities.issueSshUserCert({
      publicKey: (await readFile(`${alice.key}.pub`, 'utf8')).trim(),
      keyId: 'alice',
      principals: [env.login],
      validAfter: new Date(Date.now() - 7200e3),
      validBefore: new Date(Date.now() - 3600e3),
      identity: { user: 'alice', roles: ['dev'], traits: {}, expires: new Date(Date.now() - 3600e3) },
    });
    const expiredCert = path.join(env.dir, 'expired-cert.pub');
    await writeFile(expiredCert, `${expired.cert}\n`);
    const cfg = path.join(env.dir, 'expired_cfg');
    await writeFile(cfg, sshConfig({ key: alice.key, cert: expiredCert, knownHosts: alice.knownHosts }));
    const r = await runTool('ssh', ['-F', cfg, '-p', String(env.port), 'alice@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('certificate expired');

    const ca = path.join(env.dir, 'rogue_ca');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    const rogueKey = path.join(env.dir, 'rogue_user');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', rogueKey]);
    await run('ssh-keygen', [
      '-q',
      '-s',
      ca,
      '-I',
      'alice',
      '-n',
      'root',
      '-V',
      '-5m:+1h',
      `${rogueKey}.pub`,
    ]);
    const cfg2 = path.join(env.dir, 'rogue_cfg');
    await writeFile(
      cfg2,
      sshConfig({ key: rogueKey, cert: `${rogueKey}-cert.pub`, knownHosts: alice.knownHosts }),
    );
    const r2 = await runTool('ssh', ['-F', cfg2, '-p', String(env.port), 'alice@127.0.0.1', 'true']);
    expect(r2.code).toBe(255);
    expect(r2.stderr).toContain('not signed by a trusted Gatehouse CA');
    expect(
      (await events('ssh.reject')).filter((e) => 'reason' in e && e.reason === 'auth_failed').length,
    ).toBeGreaterThanOrEqual(2);
  });
});

describe('bad input does not hurt other sessions', () => {
  it('garbage after the banner and a stalled handshake are dropped while a real session works', async () => {
    const garbage = net.connect(env.port, '127.0.0.1');
    await new Promise((r) => garbage.once('connect', r));
    garbage.write(Buffer.concat([Buffer.from('SSH-2.0-evil\r\n'), Buffer.alloc(4096, 0xff)]));
    const garbageClosed = new Promise((r) => garbage.once('close', r));
    // Read what the gateway sends: a paused socket never sees the close.
    garbage.resume();
    garbage.on('error', () => {});
    const stalled = net.connect(env.port, '127.0.0.1');
    stalled.on('error', () => {});
    await new Promise((r) => stalled.once('connect', r));
    stalled.write('SSH-2.0-slow\r\n');
    const stalledClosed = new Promise((r) => stalled.once('close', r));
    stalled.resume();
    const ok = await sshJ(env, alice, `${env.login}@node1`, ['--', 'echo still-fine']);
    expect(ok.stdout.toString()).toBe('still-fine\n');
    await garbageClosed;
    await stalledClosed;
    const rejects = await waitFor(
      async () => {
        const e = await events('ssh.reject');
        return e.some((x) => 'reason' in x && x.reason === 'handshake_timeout') ? e : undefined;
      },
      'a handshake_timeout audit event',
      10_000,
    );
    expect(rejects.some((x) => 'reason' in x && x.reason === 'malformed')).toBe(true);
  });
});
