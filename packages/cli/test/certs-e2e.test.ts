import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Sshd, startSshd, TEST_LOGIN } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAccessUser, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

const exec = promisify(execFile);

/**
 * The proof that the certificates are real: what `gatehouse login`
 * hands out is accepted by a real OpenSSH sshd configured only with
 * `gatehouse ca export --format sshd`, and by `openssl verify` against
 * `gatehouse ca export --format x509`.
 */
describe('certificates from gatehouse login against real OpenSSH and OpenSSL', () => {
  let d: Daemon;
  let sshd: Sshd;
  let home: string;
  let files: Record<string, string>;

  const ssh = (login: string, keyFiles: Record<string, string>, extra: string[] = [], port = sshd.port) =>
    exec(
      'ssh',
      [
        '-F',
        '/dev/null',
        '-o',
        'BatchMode=yes',
        '-o',
        'IdentitiesOnly=yes',
        '-o',
        `IdentityFile=${keyFiles.ssh_key}`,
        '-o',
        `CertificateFile=${keyFiles.ssh_cert}`,
        '-o',
        'StrictHostKeyChecking=no',
        '-o',
        'UserKnownHostsFile=/dev/null',
        '-o',
        'LogLevel=ERROR',
        '-p',
        String(port),
        ...extra,
        `${login}@127.0.0.1`,
        'echo gatehouse-e2e-ok',
      ],
      { timeout: 20_000 },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({
        code: e.code ?? -1,
        stdout: e.stdout ?? '',
        stderr: e.stderr ?? '',
      }),
    );

  const login = async (user: string, homeDir: string, extra: string[] = []) => {
    const r = await run(
      [
        'login',
        '--proxy',
        d.proxy,
        '--user',
        user,
        '--ca-pin',
        d.pin,
        '--password-stdin',
        '--json',
        ...extra,
      ],
      {
        env: { GATEHOUSE_HOME: homeDir },
        input: `${PASSWORD}\n`,
      },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return (JSON.parse(r.stdout) as { files: Record<string, string> }).files;
  };

  beforeAll(async () => {
    d = await startDaemon({ cluster: 'e2e' });
    home = join(d.root, 'home-alice');
    // Admin verbs on the gateway host, like tctl: straight on the data dir through its config.
    await addAccessUser(d, 'alice', TEST_LOGIN);
    // The sshd trusts exactly what `ca export` prints, fetched from the running proxy without a login.
    const ca = await run(['ca', 'export', '--format', 'sshd', '--proxy', d.proxy, '--ca-pin', d.pin]);
    expect(ca.code, ca.stderr).toBe(0);
    expect(ca.stdout).toMatch(/^ssh-ed25519 AAAA\S+/m);
    const local = await run(['--config', d.configFile, 'ca', 'export', '--format', 'sshd']);
    expect(local.stdout).toBe(ca.stdout);
    const hostKey = join(d.root, 'ssh_host_ed25519_key');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    sshd = await startSshd({ dir: d.root, userCaKeys: ca.stdout, hostKey });
    files = await login('alice', home);
  });

  afterAll(async () => {
    await sshd?.stop();
    if (d) {
      expect(await d.stop()).toBe(0);
      rmSync(d.root, { recursive: true, force: true });
    }
  });

  it('ssh-keygen -L shows the allowed login as principal and a validity of the role TTL', async () => {
    const { stdout } = await exec('ssh-keygen', ['-L', '-f', files.ssh_cert!]);
    expect(stdout).toContain('Type: ssh-ed25519-cert-v01@openssh.com user certificate');
    expect(stdout).toMatch(/Key ID: "alice"/);
    expect(stdout).toMatch(new RegExp(`Principals:\\s*\\n\\s+${TEST_LOGIN}\\s*\\n\\s+Critical Options`));
    const m = /Valid: from (\S+) to (\S+)/.exec(stdout);
    expect(m).not.toBeNull();
    const hours = (Date.parse(m![2]!) - Date.parse(m![1]!)) / 3600e3;
    // access role default max_session_ttl is 8h; the cert also starts a minute early for clock skew.
    expect(hours).toBeGreaterThan(7.9);
    expect(hours).toBeLessThanOrEqual(8.05);
    expect(stdout).toContain('permit-pty');
  });

  it('sshd accepts the login certificate for an allowed principal', async () => {
    const r = await ssh(TEST_LOGIN, files);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('gatehouse-e2e-ok');
  });

  it('sshd refuses a principal the certificate does not name', async () => {
    const r = await ssh('daemon', files);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Permission denied');
    expect(await sshd.log()).toMatch(
      /Certificate invalid: name is not a listed principal|not a listed principal/,
    );
  });

  it('sshd refuses an expired certificate', async () => {
    const shortHome = join(d.root, 'home-short');
    const short = await login('alice', shortHome, ['--ttl', '2s']);
    const ok = await ssh(TEST_LOGIN, short);
    expect(ok.stdout.trim()).toBe('gatehouse-e2e-ok');
    await new Promise((r) => setTimeout(r, 3_500));
    const r = await ssh(TEST_LOGIN, short);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('Permission denied');
    expect(await sshd.log()).toMatch(/expired/);
  });

  it('a deleted or locked user is refused by sshd through the exported KRL (RevokedKeys), even with an unexpired certificate', async () => {
    await addAccessUser(d, 'bob', TEST_LOGIN);
    const bobFiles = await login('bob', join(d.root, 'home-bob'));
    const dir = join(d.root, 'krl-node');
    mkdirSync(dir);
    const krl = join(dir, 'revoked.krl');
    const exportKrl = async () => {
      const r = await run([
        'ca',
        'export',
        '--format',
        'krl',
        '--proxy',
        d.proxy,
        '--ca-pin',
        d.pin,
        '--out',
        krl,
      ]);
      expect(r.code, r.stderr).toBe(0);
    };
    // ssh-keygen -Q exits 0 for a key the KRL does not revoke, 1 with "REVOKED" for one it does.
    const revoked = async (certFile: string) =>
      exec('ssh-keygen', ['-Q', '-f', krl, certFile]).then(
        () => false,
        (e: { stdout?: string }) => (e.stdout ?? '').includes('REVOKED'),
      );
    await exportKrl();
    const ca = await run(['ca', 'export', '--format', 'sshd', '--proxy', d.proxy, '--ca-pin', d.pin]);
    const hostKey = join(dir, 'ssh_host_ed25519_key');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    const node = await startSshd({
      dir,
      userCaKeys: ca.stdout,
      hostKey,
      extraConfig: [`RevokedKeys ${krl}`],
    });
    const viaNode = (f: Record<string, string>) => ssh(TEST_LOGIN, f, [], node.port);
    try {
      expect((await viaNode(bobFiles)).stdout.trim()).toBe('gatehouse-e2e-ok');
      expect(await revoked(bobFiles.ssh_cert!)).toBe(false);

      await run(['--config', d.configFile, 'users', 'lock', 'bob', '--message', 'laptop stolen']);
      await exportKrl();
      expect(await revoked(bobFiles.ssh_cert!)).toBe(true);
      expect(await revoked(files.ssh_cert!)).toBe(false);
      const locked = await viaNode(bobFiles);
      expect(locked.code).toBe(255);
      expect(locked.stderr).toContain('Permission denied');
      expect(await node.log()).toMatch(/revoked/i);
      // Others are not touched.
      expect((await viaNode(files)).stdout.trim()).toBe('gatehouse-e2e-ok');

      await run(['--config', d.configFile, 'users', 'unlock', 'bob']);
      await exportKrl();
      expect((await viaNode(bobFiles)).stdout.trim()).toBe('gatehouse-e2e-ok');

      await run(['--config', d.configFile, 'users', 'rm', 'bob']);
      await exportKrl();
      expect((await viaNode(bobFiles)).code).toBe(255);
      expect(await revoked(bobFiles.ssh_cert!)).toBe(true);
    } finally {
      await node.stop();
    }
  });

  it('openssl verifies the X.509 login certificate against the exported user CA and shows the identity', async () => {
    const ca = await run(['ca', 'export', '--format', 'x509', '--proxy', d.proxy, '--ca-pin', d.pin]);
    expect(ca.code, ca.stderr).toBe(0);
    const caFile = join(d.root, 'user-ca.pem');
    writeFileSync(caFile, ca.stdout);
    const v = await exec('openssl', ['verify', '-CAfile', caFile, files.tls_cert!]);
    expect(v.stdout.trim()).toBe(`${files.tls_cert}: OK`);

    const host = await run([
      'ca',
      'export',
      '--format',
      'x509',
      '--type',
      'host',
      '--proxy',
      d.proxy,
      '--ca-pin',
      d.pin,
    ]);
    const hostFile = join(d.root, 'host-ca.pem');
    writeFileSync(hostFile, host.stdout);
    const bad = await exec('openssl', ['verify', '-CAfile', hostFile, files.tls_cert!]).catch(
      (e: { stdout: string; stderr: string }) => e,
    );
    expect(`${bad.stdout}${bad.stderr}`).toMatch(
      /unable to get local issuer certificate|verification failed/,
    );

    const text = (await exec('openssl', ['x509', '-noout', '-text', '-in', files.tls_cert!])).stdout;
    expect(text).toMatch(/Subject: .*CN ?= ?alice/);
    expect(text).toContain('1.2.840.113556.1.8000.2554');
    expect(text).toContain('"user":"alice"');
    expect(text).toContain('"roles":["access"]');
    expect(text).toContain('TLS Web Client Authentication');
    expect(readFileSync(files.tls_cert!, 'utf8')).toContain('BEGIN CERTIFICATE');
  });
});
