/**
 * Test harness for the SSH proxy: a gateway with the ssh adapter on a free
 * port, a real OpenSSH sshd node trusting its user CA with a host certificate
 * from its host CA, users logged in through the real login API, and the real
 * OpenSSH client configured like `gatehouse config ssh` would.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MemoryAuditLog, MemoryRecordingStore } from '@gatehouse/audit/testing';
import { type Clock, createGateway, GatehouseClient, type Gateway, systemClock } from '@gatehouse/core';
import { type Sshd, startSshd } from '@gatehouse/core/testing';
import { type SshAdapterOptions, ssh } from '../src/index.js';
import {
  generateHostKey,
  type NodeService,
  type NodeServiceOptions,
  startNodeService,
} from '../src/node/index.js';

const run = promisify(execFile);

export interface TestEnv {
  gw: Gateway;
  port: number;
  dir: string;
  recordings: MemoryRecordingStore;
  sshd: Sshd;
  /**
   * A fresh Unix account the sessions log in as: its shell runs the distribution's
   * default dotfiles, not root's (which may do slow or locking work at login).
   */
  login: string;
  close(): Promise<void>;
}

/** useradd + an unlocked password field ('*': no password, but sshd with UsePAM no accepts the account). */
export function createLogin(): { name: string; remove(): void } {
  const name = `ghs${randomBytes(3).toString('hex')}`;
  execFileSync('useradd', ['-m', '-s', '/bin/bash', name]);
  execFileSync('usermod', ['-p', '*', name]);
  return { name, remove: () => execFileSync('userdel', ['-r', '-f', name], { stdio: 'ignore' }) };
}

export async function startEnv(
  opts: { adapter?: SshAdapterOptions; clock?: Clock; secondFactor?: 'otp' | 'off' } = {},
): Promise<TestEnv> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-ssh-'));
  const login = createLogin();
  const recordings = new MemoryRecordingStore();
  const gw = await createGateway({
    dataDir: path.join(dir, 'data'),
    clusterName: 'acme',
    secondFactor: opts.secondFactor ?? 'off',
    env: {},
    recordings,
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  gw.use(ssh(opts.adapter));
  const { port } = await gw.listen({ host: '127.0.0.1', port: 0 });
  const hostKey = path.join(dir, 'ssh_host_ed25519_key');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const hostCert = await gw.authorities.issueSshHostCert({
    publicKey: (await readFile(`${hostKey}.pub`, 'utf8')).trim(),
    keyId: 'node1',
    principals: ['node1', '127.0.0.1'],
    // Backdated: a test may run the gateway on a clock behind the machine's (session-mfa.test.ts).
    validAfter: new Date(Date.now() - 600e3),
    validBefore: new Date(Date.now() + 3600e3),
  });
  await writeFile(`${hostKey}-cert.pub`, `${hostCert.cert}\n`);
  const sshd = await startSshd({
    dir,
    userCaKeys: gw.exportCa('sshd'),
    hostKey,
    hostCert: `${hostKey}-cert.pub`,
    extraConfig: ['PrintMotd no', 'PrintLastLog no', 'AllowTcpForwarding yes', 'GatewayPorts no'],
  });
  return {
    gw,
    port,
    dir,
    recordings,
    sshd,
    login: login.name,
    async close() {
      await sshd.stop();
      await gw.close();
      login.remove();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface UserFiles {
  user: string;
  key: string;
  cert: string;
  knownHosts: string;
  /** An ssh_config with everything `-J` needs (the jump process reads -F, not -o). */
  config: string;
  tlsKeyPem: string;
  tlsCertPem: string;
}

/** Logs `user` in through the HTTP login API (a fresh Ed25519 key) and writes the client files. */
export async function loginUser(
  env: TestEnv,
  user: string,
  password: string,
  opts: { ttl?: string; otp?: string } = {},
): Promise<UserFiles> {
  const udir = path.join(env.dir, `user-${user}-${Math.random().toString(36).slice(2, 8)}`);
  await run('mkdir', ['-p', udir]);
  const key = path.join(udir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', user, '-f', key]);
  const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const client = new GatehouseClient({
    proxy: `127.0.0.1:${env.port}`,
    caPem: env.gw.authorities.get('host').map((k) => k.x509CertPem),
  });
  const res = await client.login({
    user,
    password,
    ssh_public_key: (await readFile(`${key}.pub`, 'utf8')).trim(),
    tls_public_key: tls.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ...(opts.ttl ? { ttl: opts.ttl } : {}),
    ...(opts.otp ? { otp: opts.otp } : {}),
  });
  const cert = `${key}-cert.pub`;
  await writeFile(cert, `${res.ssh_cert}\n`);
  const knownHosts = path.join(udir, 'known_hosts');
  await writeFile(knownHosts, env.gw.exportCa('known_hosts'));
  const config = path.join(udir, 'ssh_config');
  await writeFile(config, sshConfig({ key, cert, knownHosts }));
  return {
    user,
    key,
    cert,
    knownHosts,
    config,
    tlsKeyPem: tls.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    tlsCertPem: res.tls_cert ?? '',
  };
}

export function sshConfig(f: { key: string; cert: string; knownHosts: string }): string {
  return [
    'Host *',
    `  IdentityFile ${f.key}`,
    `  CertificateFile ${f.cert}`,
    '  IdentitiesOnly yes',
    `  UserKnownHostsFile ${f.knownHosts}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    '  BatchMode yes',
    '  ConnectTimeout 20',
    '  PasswordAuthentication no',
    '  KbdInteractiveAuthentication no',
    '  LogLevel INFO',
    '',
  ].join('\n');
}

export interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a real OpenSSH tool (ssh, scp, sftp) to completion. */
export function runTool(
  tool: string,
  args: string[],
  opts: {
    input?: string | Buffer;
    timeoutMs?: number;
    keepStdinOpenMs?: number;
    /** Added to (or, as undefined, removed from) the environment, e.g. SSH_AUTH_SOCK. */
    env?: Record<string, string | undefined>;
  } = {},
): Promise<Result> & { child: ChildProcess } {
  const env = opts.env ? { ...process.env, ...opts.env } : process.env;
  const child = spawn(tool, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  const p = new Promise<Result>((resolve, reject) => {
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    if (opts.input !== undefined) child.stdin!.write(opts.input);
    if (opts.keepStdinOpenMs === undefined) child.stdin!.end();
    else setTimeout(() => child.stdin!.end(), opts.keepStdinOpenMs).unref();
  });
  return Object.assign(p, { child });
}

/** `ssh -F cfg -J user@gateway [options] LOGIN@NODE [command]`; `extra` is options, then `--` and the command. */
export function sshJ(
  env: TestEnv,
  f: UserFiles,
  target: string,
  extra: string[] = [],
  opts: Parameters<typeof runTool>[2] = {},
) {
  const dd = extra.indexOf('--');
  const options = dd < 0 ? extra : extra.slice(0, dd);
  const command = dd < 0 ? [] : extra.slice(dd + 1);
  return runTool(
    'ssh',
    ['-F', f.config, '-J', `${f.user}@127.0.0.1:${env.port}`, ...options, target, ...command],
    opts,
  );
}

/**
 * Gatehouse's own node service (a separate SSH server trusting the user CA,
 * with a host certificate), registered in `env`'s gateway as `name` with
 * the label env=dev. The caller stops it.
 */
export async function startTestNode(
  env: TestEnv,
  name = 'node2',
  extra: Partial<NodeServiceOptions> = {},
): Promise<NodeService> {
  const { gw } = env;
  const hostKey = generateHostKey(name);
  const hostCert = await gw.authorities.issueSshHostCert({
    publicKey: hostKey.publicKey,
    keyId: name,
    principals: [name],
    validAfter: new Date(),
    validBefore: new Date(Date.now() + 3600e3),
  });
  const node = await startNodeService({
    host: '127.0.0.1',
    port: 0,
    hostKey: hostKey.privateKey,
    hostCert: hostCert.cert,
    trustedUserCaKeys: () => gw.authorities.get('user').map((k) => k.sshPublicKey),
    clock: systemClock,
    audit: new MemoryAuditLog(),
    nodeName: name,
    labels: { env: 'dev' },
    ...extra,
  });
  await gw.nodes.add({ name, addr: node.address, labels: { env: 'dev' } }, 'test');
  return node;
}
