/**
 * Certificates from CertificateAuthorities against the real OpenSSH tools:
 * ssh-keygen reads them, sshd trusts the user CA (TrustedUserCAKeys) and
 * serves a host certificate the ssh client verifies through @cert-authority.
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MemoryAuditLog } from '@gatehouse/audit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBackend } from '../src/backend/memory.js';
import { ManualClock, systemClock } from '../src/clock.js';
import { AesGcmSealer } from '../src/crypto/seal.js';
import { CertificateAuthorities } from '../src/pki/authority.js';
import type { SshUserCertRequest } from '../src/pki/types.js';
import { TEST_LOGIN } from '../src/testing/peers.js';

const run = promisify(execFile);
const SSHD = '/usr/sbin/sshd';

let dir: string;
let cas: CertificateAuthorities;
let foreign: CertificateAuthorities;
let sshd: ChildProcess;
let port: number;
let sshdLog: string;
let clientKey: string;
let clientPub: string;
const backends: MemoryBackend[] = [];

async function newCas(clusterName: string): Promise<CertificateAuthorities> {
  const backend = new MemoryBackend({ sweepIntervalMs: 0 });
  backends.push(backend);
  const c = new CertificateAuthorities({
    backend,
    sealer: new AesGcmSealer(randomBytes(32)),
    clock: systemClock,
    clusterName,
    audit: new MemoryAuditLog({ cluster: clusterName }),
  });
  await c.init();
  return c;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}

async function waitForPort(p: number, child: ChildProcess, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new Error(`sshd exited with ${child.exitCode}: ${await readFile(sshdLog, 'utf8')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(p, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`sshd did not listen on ${p}`);
}

function hour(offsetHours: number, from = new Date()): Date {
  return new Date(from.getTime() + offsetHours * 3600e3);
}

async function writeCert(name: string, cert: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, `${cert}\n`);
  return file;
}

async function userCert(name: string, over: Partial<SshUserCertRequest> = {}, ca = cas): Promise<string> {
  const issued = await ca.issueSshUserCert({
    publicKey: clientPub,
    keyId: 'alice',
    principals: [TEST_LOGIN],
    validAfter: new Date(),
    validBefore: hour(1),
    ...over,
  });
  return writeCert(name, issued.cert);
}

/** SHA256 fingerprint of a CA's SSH key, as ssh-keygen prints it. */
async function fingerprint(ca: CertificateAuthorities, name: 'user' | 'host'): Promise<string> {
  const file = path.join(dir, `${name}-${randomBytes(4).toString('hex')}.pub`);
  await writeFile(file, `${ca.signingKey(name).sshPublicKey}\n`);
  return (await run('ssh-keygen', ['-l', '-f', file])).stdout.split(' ')[1] as string;
}

interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function ssh(
  certFile: string,
  opts: { knownHosts?: string; bind?: string; user?: string } = {},
): Promise<SshResult> {
  const args = [
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'PasswordAuthentication=no',
    '-o',
    'KbdInteractiveAuthentication=no',
    '-o',
    `CertificateFile=${certFile}`,
    '-i',
    clientKey,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${opts.knownHosts ?? path.join(dir, 'known_hosts')}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'ConnectTimeout=10',
    ...(opts.bind ? ['-b', opts.bind] : []),
    '-p',
    String(port),
    `${opts.user ?? TEST_LOGIN}@127.0.0.1`,
    'echo',
    'ok',
  ];
  try {
    const { stdout, stderr } = await run('ssh', args, { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

/** sshd log lines written since `mark` (the log length before the attempt). */
async function logSince(mark: number): Promise<string> {
  return (await readFile(sshdLog, 'utf8')).slice(mark);
}

async function logMark(): Promise<number> {
  return (await readFile(sshdLog, 'utf8')).length;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'gh-pki-ssh-'));
  cas = await newCas('acme');
  foreign = await newCas('elsewhere');
  clientKey = path.join(dir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@test', '-f', clientKey]);
  clientPub = (await readFile(`${clientKey}.pub`, 'utf8')).trim();

  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const hostCert = await cas.issueSshHostCert({
    publicKey: (await readFile(`${hostKey}.pub`, 'utf8')).trim(),
    keyId: 'test-node',
    principals: ['127.0.0.1', 'localhost'],
    validAfter: new Date(),
    validBefore: hour(1),
  });
  await writeFile(`${hostKey}-cert.pub`, `${hostCert.cert}\n`);
  await writeFile(path.join(dir, 'user_ca.pub'), cas.export('sshd'));
  await writeFile(path.join(dir, 'known_hosts'), cas.export('known_hosts'));

  await mkdir('/run/sshd', { recursive: true });
  port = await freePort();
  sshdLog = path.join(dir, 'sshd.log');
  await writeFile(sshdLog, '');
  const config = path.join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `HostCertificate ${hostKey}-cert.pub`,
      `TrustedUserCAKeys ${path.join(dir, 'user_ca.pub')}`,
      'AuthorizedKeysFile none',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'UsePAM no',
      'StrictModes no',
      'LogLevel VERBOSE',
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  sshd = spawn(SSHD, ['-D', '-f', config, '-E', sshdLog], { stdio: 'ignore' });
  await waitForPort(port, sshd);
});

afterAll(async () => {
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  for (const b of backends) await b.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('ssh-keygen -L', () => {
  it('shows type, key id, principals, validity, critical options and extensions', async () => {
    const from = new Date('2026-05-01T10:00:00Z');
    const file = await userCert('inspect-cert.pub', {
      principals: ['root', 'alice'],
      validAfter: from,
      validBefore: hour(8, from),
      permitPortForwarding: true,
      sourceAddress: '127.0.0.1/32,10.0.0.0/8',
      identity: { user: 'alice', roles: ['dev'], traits: { logins: ['root'] }, expires: hour(8, from) },
    });
    const { stdout } = await run('ssh-keygen', ['-L', '-f', file], { env: { ...process.env, TZ: 'UTC' } });
    expect(stdout).toMatch(/Type: ssh-ed25519-cert-v01@openssh\.com user certificate/);
    expect(stdout).toMatch(/Key ID: "alice"/);
    expect(stdout).toMatch(/Principals: \n\s+root\n\s+alice\n/);
    // Gatehouse backdates the start by one minute for clock skew.
    expect(stdout).toMatch(/Valid: from 2026-05-01T09:59:00 to 2026-05-01T18:00:00/);
    expect(stdout).toMatch(/Critical Options: \n\s+source-address 127\.0\.0\.1\/32,10\.0\.0\.0\/8\n/);
    expect(stdout).toMatch(
      /Extensions: \n\s+gatehouse-identity@gatehouse\.dev UNKNOWN OPTION: [0-9a-f]+ \(len \d+\)\n\s+gatehouse-session-policy@gatehouse\.dev UNKNOWN OPTION: [0-9a-f]+ \(len \d+\)\n\s+permit-port-forwarding\n\s+permit-pty\n/,
    );
    expect(stdout).toContain(`Signing CA: ED25519 ${await fingerprint(cas, 'user')} (using ssh-ed25519)`);
  });

  it('shows host certificates as such', async () => {
    const { stdout } = await run('ssh-keygen', ['-L', '-f', path.join(dir, 'ssh_host_ed25519_key-cert.pub')]);
    expect(stdout).toMatch(/Type: ssh-ed25519-cert-v01@openssh\.com host certificate/);
    expect(stdout).toMatch(/Principals: \n\s+127\.0\.0\.1\n\s+localhost\n/);
    expect(stdout).toMatch(/Critical Options: \(none\)/);
  });
});

describe('sshd with TrustedUserCAKeys = export("sshd")', () => {
  it('accepts a certificate whose principals include the login, and the client verifies the host cert', async () => {
    const r = await ssh(await userCert('ok-cert.pub'));
    expect(r.stderr).not.toMatch(/Permission denied|verification failed/);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('ok');
  });

  it('the client refuses the host when known_hosts trusts another CA', async () => {
    const kh = path.join(dir, 'known_hosts_foreign');
    await writeFile(kh, foreign.export('known_hosts'));
    const r = await ssh(await userCert('hostcheck-cert.pub'), { knownHosts: kh });
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Host key verification failed/);
  });

  it('refuses a login that is not among the principals', async () => {
    const mark = await logMark();
    const r = await ssh(await userCert('alice-only-cert.pub', { principals: ['alice'] }));
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(await logSince(mark)).toMatch(/name is not a listed principal/);
  });

  it('refuses an expired certificate', async () => {
    const past = new ManualClock(hour(-3));
    const mark = await logMark();
    const r = await ssh(
      await userCert('expired-cert.pub', { validAfter: past.now(), validBefore: hour(1, past.now()) }),
    );
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    expect(await logSince(mark)).toMatch(/expired/);
  });

  it('refuses a certificate from a different CA', async () => {
    const mark = await logMark();
    const r = await ssh(await userCert('foreign-cert.pub', {}, foreign));
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    // sshd logs the certificate's CA when it is not one of TrustedUserCAKeys.
    expect(await logSince(mark)).toContain(`ID alice (serial`);
    expect(await logSince(mark)).toMatch(
      new RegExp(
        `Failed publickey for ${TEST_LOGIN} .* CA ED25519 ${(await fingerprint(foreign, 'user')).replace(/[+/]/g, '\\$&')}`,
      ),
    );
  });

  it('enforces source-address', async () => {
    const file = await userCert('srcaddr-cert.pub', { sourceAddress: '127.0.0.1/32' });
    const mark = await logMark();
    const denied = await ssh(file, { bind: '127.0.0.2' });
    expect(denied.code).toBe(255);
    expect(denied.stderr).toMatch(/Permission denied/);
    expect(await logSince(mark)).toMatch(/source address/i);
    // The same certificate from the allowed address works: the refusal was the address.
    const allowed = await ssh(file, { bind: '127.0.0.1' });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout.trim()).toBe('ok');
  });
});
