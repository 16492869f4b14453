import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Gateway } from '@gatehouse/core';

/** A throwaway Unix account (plus one supplementary group) for node tests; run as root. */
export interface TestUnixUser {
  name: string;
  uid: number;
  home: string;
  group: string;
  gid: number;
  remove(): void;
}

export function createUnixUser(): TestUnixUser {
  const suffix = randomBytes(3).toString('hex');
  const name = `ghn${suffix}`;
  const group = `ghg${suffix}`;
  execFileSync('groupadd', [group]);
  execFileSync('useradd', ['-m', '-s', '/bin/bash', '-G', group, name]);
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('getent', ['group', group]).toString().split(':')[2]);
  const home = execFileSync('getent', ['passwd', name]).toString().trim().split(':')[5] as string;
  return {
    name,
    uid,
    home,
    group,
    gid,
    remove() {
      execFileSync('userdel', ['-r', '-f', name], { stdio: 'ignore' });
      execFileSync('groupdel', [group], { stdio: 'ignore' });
    },
  };
}

export interface ClientKey {
  keyPath: string;
  certPath: string;
  publicKey: string;
}

/** An Ed25519 key made by the real ssh-keygen. */
export async function newClientKey(dir: string, name: string): Promise<ClientKey> {
  const keyPath = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', keyPath]);
  return {
    keyPath,
    certPath: `${keyPath}-cert.pub`,
    publicKey: (await readFile(`${keyPath}.pub`, 'utf8')).trim(),
  };
}

/** Issues a user certificate from the gateway's user CA and stores it next to the key (where ssh looks). */
export async function certify(
  gw: Gateway,
  key: ClientKey,
  opts: {
    principals: string[];
    user?: string;
    permitPty?: boolean;
    permitPortForwarding?: boolean;
    validAfter?: Date;
    validBefore?: Date;
  },
): Promise<string> {
  const now = Date.now();
  const issued = await gw.authorities.issueSshUserCert({
    publicKey: key.publicKey,
    keyId: opts.user ?? 'alice',
    principals: opts.principals,
    validAfter: opts.validAfter ?? new Date(now),
    validBefore: opts.validBefore ?? new Date(now + 3600_000),
    permitPty: opts.permitPty ?? true,
    permitPortForwarding: opts.permitPortForwarding ?? false,
  });
  await writeFile(key.certPath, `${issued.cert}\n`);
  await chmod(key.keyPath, 0o600);
  return issued.cert;
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real OpenSSH client against the node with strict host checking through @cert-authority. */
export function sshArgs(o: {
  port: number;
  knownHosts: string;
  key: ClientKey;
  login: string;
  alias?: string;
}): string[] {
  return [
    '-F',
    '/dev/null',
    '-p',
    String(o.port),
    '-i',
    o.key.keyPath,
    '-o',
    `CertificateFile=${o.key.certPath}`,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${o.knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    `HostKeyAlias=${o.alias ?? 'node1'}`,
    '-o',
    'ConnectTimeout=20',
    '-l',
    o.login,
    '127.0.0.1',
  ];
}

export function runSsh(args: string[], input?: string, timeoutMs = 30_000): Promise<SshResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}
