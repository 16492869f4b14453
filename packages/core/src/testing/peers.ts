import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/** A free TCP port on loopback (bound and released; fine for tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}

/** Resolves once something accepts on 127.0.0.1:port; rejects if `child` exits first. */
export async function waitForPort(
  port: number,
  child?: ChildProcess,
  ms = 15_000,
  what = 'server',
): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what} did not listen on ${port} within ${ms} ms`);
}

export interface Sshd {
  port: number;
  /** sshd's log so far (LogLevel VERBOSE). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

export const SSHD = '/usr/sbin/sshd';

/**
 * A real OpenSSH sshd on a free loopback port (shared/PEERS.md): trusts the
 * given user CA, serves the given host key (+ certificate), no passwords,
 * no authorized_keys. The caller owns `dir` and removes it.
 */
export async function startSshd(opts: {
  dir: string;
  /** Content for TrustedUserCAKeys (e.g. `gatehouse ca export --format sshd`). */
  userCaKeys: string;
  /** Path of a host private key; its `-cert.pub` is used as HostCertificate when present. */
  hostKey: string;
  hostCert?: string;
  extraConfig?: string[];
}): Promise<Sshd> {
  await mkdir('/run/sshd', { recursive: true });
  const port = await freePort();
  const logFile = path.join(opts.dir, 'sshd.log');
  const caFile = path.join(opts.dir, 'sshd_user_ca.pub');
  const config = path.join(opts.dir, 'sshd_config');
  await writeFile(logFile, '');
  await writeFile(caFile, opts.userCaKeys);
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${opts.hostKey}`,
      ...(opts.hostCert ? [`HostCertificate ${opts.hostCert}`] : []),
      `TrustedUserCAKeys ${caFile}`,
      'AuthorizedKeysFile none',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'LogLevel VERBOSE',
      `PidFile ${path.join(opts.dir, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const child = spawn(SSHD, ['-D', '-f', config, '-E', logFile], { stdio: 'ignore' });
  try {
    await waitForPort(port, child, 15_000, 'sshd');
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${(err as Error).message}\n${await readFile(logFile, 'utf8')}`);
  }
  return {
    port,
    log: () => readFile(logFile, 'utf8'),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The Unix account SSH tests log in as (created by scripts/peers.mjs, which
 * `npm test` runs first). Not root: see the note there.
 */
export const TEST_LOGIN = 'gh-test';
