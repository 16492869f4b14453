/**
 * CA rotation (`gatehouse ca rotate`, docs/decisions/0035-ca-rotation.md)
 * of the user, host and db CAs together, through every phase, against real
 * peers: an agentless OpenSSH sshd (`nodes configure --apply`), PostgreSQL
 * with psql, and kubectl with the Kubernetes fixture. A live session of each
 * stays open across all phases, new logins work in each, and after standby
 * certificates from the old keys are refused everywhere. Then a restart
 * mid-rotation resumes it, and rollback works mid-phase.
 */
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CaStatusView, createGateway, loadConfig } from '@gatehouse/core';
import { freePort, SSHD, waitForPort } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureApiServer, startFixtureApiServer } from '../../adapter-k8s/test/fixture-apiserver.js';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { type ClientRun, runClient, waitFor } from '../../core/test/helpers.js';
import { admin, auditEvents, BIN, type Daemon, PASSWORD, restartDaemon, startDaemon } from './harness.js';

const CLUSTER = 'rot';
const TYPES = ['user', 'host', 'db'] as const;
const login = `ghr${randomBytes(3).toString('hex')}`;
let d: Daemon;
let pgPeer: Postgres;
let fixture: FixtureApiServer;
let nodeDir: string;
let sshdConfig: string;
let sshdPort: number;
let sshd: ReturnType<typeof spawn> | undefined;
let tmp: string;
const homes = { ops: '', alice: '', cron: '' };
/** What alice's login held before the rotation: her SSH key and certificate, her TLS key and certificate. */
const old = { sshKey: '', tlsCert: '', tlsKey: '', proxyCert: '', dbCert: '', dbKey: '' };

function gh(who: keyof typeof homes, args: string[], input = ''): Promise<ClientRun> {
  return runClient(process.execPath, [BIN, ...args], {
    env: {
      ...process.env,
      GATEHOUSE_HOME: homes[who],
      GATEHOUSE_DATA_DIR: '',
      PGSERVICEFILE: join(tmp, 'pg_service.conf'),
    },
    input,
    timeoutMs: 60_000,
  });
}

async function ok(who: keyof typeof homes, args: string[], input = ''): Promise<string> {
  const r = await gh(who, args, input);
  expect(r.code, `gatehouse ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

function tool(program: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ClientRun> {
  return runClient(program, args, {
    env: { ...process.env, GATEHOUSE_HOME: homes.alice, PGSERVICEFILE: join(tmp, 'pg_service.conf'), ...env },
    timeoutMs: 60_000,
  });
}

async function status(): Promise<Record<string, CaStatusView>> {
  const list = JSON.parse(await ok('ops', ['ca', 'status', '--json'])) as CaStatusView[];
  return Object.fromEntries(list.map((c) => [c.type, c]));
}

/** A process kept open across the phases: a line in, an answer out. */
class Live {
  out = '';
  readonly exited: Promise<number | null>;
  constructor(
    readonly what: string,
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stdout.on('data', (b) => {
      this.out += b;
    });
    child.stderr.on('data', (b) => {
      this.out += b;
    });
    this.exited = new Promise((r) => child.once('exit', r));
  }
  async say(word: string, expected: string): Promise<void> {
    this.child.stdin.write(`${word}\n`);
    await waitFor(
      () => this.out.includes(expected) || undefined,
      `${this.what} to answer ${expected} (so far: ${this.out})`,
      20_000,
    );
  }
}

function live(what: string, program: string, args: string[]): Live {
  return new Live(
    what,
    spawn(program, args, {
      env: { ...process.env, GATEHOUSE_HOME: homes.alice, PGSERVICEFILE: join(tmp, 'pg_service.conf') },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
  );
}

const kubeconfig = () => join(tmp, 'alice.kubeconfig');
const kubectl = (args: string[]) =>
  tool('kubectl', ['--kubeconfig', kubeconfig(), '--cache-dir', join(tmp, 'kcache'), ...args], {
    PATH: process.env.PATH,
  });

/** ops and alice log in again (as at their next login in any phase); alice reaches each target anew. */
async function newLogins(phase: string): Promise<void> {
  // Both users log in again in each phase: a login before update_servers stores the new host CA,
  // which the proxy's certificate comes from after it.
  for (const who of ['ops', 'alice'] as const) {
    await ok(who, ['login', '--proxy', d.proxy, '--user', who, '--password-stdin'], `${PASSWORD}\n`);
  }
  await ok('alice', ['db', 'login', 'orders', '--db-name', 'app']);
  await ok('alice', ['kube', 'login', 'prod', '--kubeconfig', kubeconfig()]);
  const ssh = await gh('alice', ['ssh', `${login}@web1`, 'echo', `ssh-${phase}`]);
  expect(ssh.stderr, `gatehouse ssh in ${phase}`).toBe('');
  expect(ssh.stdout).toBe(`ssh-${phase}\n`);
  const psql = await tool('psql', ['-X', '-A', '-t', 'service=orders', '-c', `SELECT 'psql-${phase}'`]);
  expect(psql.stderr, `psql in ${phase}`).toBe('');
  expect(psql.stdout).toBe(`psql-${phase}\n`);
  const k = await kubectl(['exec', 'web-1', '--', 'echo', `kubectl-${phase}`]);
  expect(k.stderr, `kubectl in ${phase}`).toBe('');
  expect(k.stdout).toBe(`kubectl-${phase}\n`);
}

/** The agentless node as its renewal job runs it: host certificate and TrustedUserCAKeys from the gateway now. */
async function renewNode(): Promise<void> {
  const out = await ok('cron', [
    'nodes',
    'configure',
    'web1',
    '--renew',
    '--apply',
    '--sshd-config',
    sshdConfig,
  ]);
  expect(out).toMatch(/sshd \(pid \d+\) reloaded/);
}

/** The SHA256 fingerprint of the CA that signed an OpenSSH certificate file (ssh-keygen -L). */
function signingCa(certFile: string): string {
  const text = execFileSync('ssh-keygen', ['-L', '-f', certFile], { encoding: 'utf8' });
  return /Signing CA: \S+ (SHA256:\S+)/.exec(text)?.[1] ?? '';
}

function keyFile(home: string, name: string): string {
  const found = execFileSync('find', [home, '-name', name], { encoding: 'utf8' }).trim().split('\n')[0] ?? '';
  if (!found) throw new Error(`${name} not found under ${home}`);
  return found;
}

/**
 * The gatehouse config ssh block without its IdentityFile and CertificateFile lines: ssh tries every
 * IdentityFile it is given, so with them the profile's current key would log in in place of the one under test.
 */
function sshConfigWithoutKeys(block: string): string {
  const out = block.replace(/^\s*(IdentityFile|CertificateFile) .*\n/gm, '');
  expect(out).not.toBe(block);
  return out;
}

/** ssh through the proxy (the gatehouse config ssh block) presenting the given key and certificate. */
function sshWithKey(key: string, cert: string, command: string): Promise<ClientRun> {
  return tool('ssh', [
    '-F',
    join(tmp, 'ssh_config'),
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `IdentityFile=${key}`,
    '-o',
    `CertificateFile=${cert}`,
    `${login}@web1.${CLUSTER}`,
    command,
  ]);
}

/** Straight to the node's sshd (no gateway) with a certificate the proxy would present: what TrustedUserCAKeys accepts. */
function sshDirect(key: string, command: string): Promise<ClientRun> {
  return tool('ssh', [
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `UserKnownHostsFile=${join(tmp, 'known_hosts_direct')}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-i',
    key,
    '-p',
    String(sshdPort),
    `${login}@127.0.0.1`,
    command,
  ]);
}

/** psql straight to PostgreSQL with a db client certificate: what ssl_ca_file accepts. */
function psqlDirect(cert: string, key: string): Promise<ClientRun> {
  return tool('psql', [
    '-X',
    '-A',
    '-t',
    `host=127.0.0.1 port=${pgPeer.port} user=alice dbname=app sslmode=verify-ca sslrootcert=${pgPeer.serverCaFile} sslcert=${cert} sslkey=${key}`,
    '-c',
    'SELECT 1',
  ]);
}

/** curl's view of the gateway with a client certificate: whoami answers only for a trusted user CA. */
function whoami(cert: string, key: string): Promise<ClientRun> {
  return tool('curl', [
    '-sS',
    '--cacert',
    join(tmp, 'host-cas.pem'),
    '--cert',
    cert,
    '--key',
    key,
    '-w',
    '\n%{http_code}',
    `https://${d.proxy}/v1/whoami`,
  ]);
}

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', login]);
  execFileSync('usermod', ['-p', '*', login]);
  tmp = mkdtempSync(join(tmpdir(), 'gh-rot-'));
  d = await startDaemon({ cluster: CLUSTER, listen: `127.0.0.1:${await freePort()}` });
  for (const who of ['ops', 'alice', 'cron'] as const) homes[who] = join(d.root, `home-${who}`);
  await admin(d, ['users', 'add', 'ops', '--roles', 'admin', '--password-stdin'], `${PASSWORD}\n`);
  await admin(
    d,
    [
      'users',
      'add',
      'alice',
      '--roles',
      'access',
      '--logins',
      login,
      '--traits',
      'db_users=alice',
      'db_names=app',
      'kube_groups=developers',
      '--password-stdin',
    ],
    `${PASSWORD}\n`,
  );
  for (const who of ['ops', 'alice'] as const) {
    await ok(
      who,
      ['login', '--proxy', d.proxy, '--user', who, '--ca-pin', d.pin, '--password-stdin'],
      `${PASSWORD}\n`,
    );
  }
  // The agentless node, onboarded as an operator does (agentless-node.test.ts).
  mkdirSync('/run/sshd', { recursive: true });
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
      'LogLevel VERBOSE',
      `PidFile ${join(nodeDir, 'sshd.pid')}`,
      '',
    ].join('\n'),
  );
  await ok('ops', ['nodes', 'add', 'web1', '--addr', `127.0.0.1:${sshdPort}`]);
  await ok('ops', ['nodes', 'configure', 'web1', '--apply', '--sshd-config', sshdConfig]);
  sshd = spawn(SSHD, ['-D', '-f', sshdConfig, '-E', join(nodeDir, 'sshd.log')], { stdio: 'ignore' });
  await waitForPort(sshdPort, sshd, 15_000, 'sshd');
  // PostgreSQL trusting the db CA, registered as orders.
  pgPeer = await startPostgres({
    dbCaPem: await ok('ops', ['ca', 'export', '--format', 'postgres']),
    roles: ['alice'],
    databases: ['app'],
  });
  await ok('ops', [
    'db',
    'add',
    'orders',
    '--protocol',
    'postgres',
    '--uri',
    `localhost:${pgPeer.port}`,
    '--ca-file',
    pgPeer.serverCaFile,
  ]);
  // The Kubernetes fixture, registered as prod.
  fixture = await startFixtureApiServer({ dir: tmp });
  writeFileSync(join(tmp, 'upstream.kubeconfig'), fixture.kubeconfig);
  await ok('ops', ['kube', 'add', 'prod', '--kubeconfig', join(tmp, 'upstream.kubeconfig')]);
  await newLogins('before');
  // What the old keys signed: alice's login (copied aside), and certificates only the old
  // user CA (a proxy-style login certificate) and old db CA (a db client certificate) signed.
  const keep = join(tmp, 'old');
  mkdirSync(keep);
  for (const [name, to] of [
    ['id_ed25519', 'sshKey'],
    ['tls.crt', 'tlsCert'],
    ['tls.key', 'tlsKey'],
  ] as const) {
    old[to] = join(keep, name);
    copyFileSync(keyFile(homes.alice, name), old[to]);
  }
  copyFileSync(keyFile(homes.alice, 'id_ed25519-cert.pub'), `${old.sshKey}-cert.pub`);
  old.proxyCert = join(keep, 'proxy_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', old.proxyCert]);
  old.dbKey = join(keep, 'db.key');
  old.dbCert = join(keep, 'db.crt');
  const dbPair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(old.dbKey, dbPair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const gw = await createGateway({ config: await loadConfig({ file: d.configFile, env: {} }), env: {} });
  try {
    const now = new Date();
    const until = new Date(now.getTime() + 3600e3);
    const c = await gw.authorities.issueSshUserCert({
      publicKey: readFileSync(`${old.proxyCert}.pub`, 'utf8').trim(),
      keyId: 'alice',
      principals: [`gatehouse-proxy:${login}`],
      validAfter: now,
      validBefore: until,
    });
    writeFileSync(`${old.proxyCert}-cert.pub`, `${c.cert}\n`);
    const dbc = await gw.authorities.issueDbClientCert({
      publicKeyPem: dbPair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
      dbUser: 'alice',
      notBefore: now,
      notAfter: until,
    });
    writeFileSync(old.dbCert, dbc.cert);
  } finally {
    await gw.close();
  }
}, 180_000);

afterAll(async () => {
  execFileSync('userdel', ['-r', '-f', login], { stdio: 'ignore' });
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd!.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  await d?.stop();
  await pgPeer?.stop();
  await fixture?.close();
  if (d) rmSync(d.root, { recursive: true, force: true });
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('CA rotation of the user, host and db CAs with live SSH, psql and kubectl sessions', () => {
  it('walks every phase: live sessions go on, new logins work, and after standby the old keys are trusted nowhere', async () => {
    const before = await status();
    for (const t of TYPES) expect(before[t]).toMatchObject({ phase: 'standby', keys: [{ role: 'current' }] });
    const oldFp = Object.fromEntries(TYPES.map((t) => [t, before[t]!.keys[0]!.ssh_fingerprint]));
    // The certificates of the old keys work before the rotation (so their refusal later means something).
    writeFileSync(
      join(tmp, 'known_hosts_direct'),
      await ok('ops', ['ca', 'export', '--format', 'known_hosts']),
    );
    expect((await sshDirect(old.proxyCert, 'echo direct')).stdout).toBe('direct\n');
    expect((await psqlDirect(old.dbCert, old.dbKey)).stdout).toBe('1\n');

    const sessions = [
      live('ssh', process.execPath, [BIN, 'ssh', `${login}@web1`, 'while read l; do echo ssh-got-$l; done']),
      live('psql', 'psql', ['-X', '-A', '-t', 'service=orders']),
      live('kubectl', 'kubectl', [
        '--kubeconfig',
        kubeconfig(),
        '--cache-dir',
        join(tmp, 'kcache-live'),
        'exec',
        '-i',
        'web-1',
        '--',
        'sh',
        '-c',
        'while read l; do echo kube-got-$l; done',
      ]),
    ];
    const [sshLive, psqlLive, kubeLive] = sessions as [Live, Live, Live];
    const stillUp = async (phase: string) => {
      await sshLive.say(phase, `ssh-got-${phase}`);
      await psqlLive.say(`SELECT 'psql-got-${phase}';`, `psql-got-${phase}`);
      await kubeLive.say(phase, `kube-got-${phase}`);
    };
    await stillUp('start');

    // init: new keys, trusted everywhere, signing nothing yet.
    for (const t of TYPES) {
      const out = await ok('ops', ['ca', 'rotate', '--type', t, '--manual']);
      expect(out).toContain(`The ${t} CA is now in phase init.`);
    }
    const twice = await gh('ops', ['ca', 'rotate', '--type', 'user', '--manual']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('error: a rotation of the user CA is already in progress (phase init)');
    const init = await status();
    const newFp = Object.fromEntries(
      TYPES.map((t) => [t, init[t]!.keys.find((k) => k.role === 'new')!.ssh_fingerprint]),
    );
    for (const t of TYPES) {
      expect(init[t]!.keys.map((k) => [k.role, k.signing])).toEqual([
        ['new', false],
        ['old', true],
      ]);
      expect(init[t]!.keys[1]!.ssh_fingerprint).toBe(oldFp[t]);
    }
    // Trust both outside Gatehouse: the node's TrustedUserCAKeys (nodes configure) and PostgreSQL's ssl_ca_file.
    await renewNode();
    expect(readFileSync(join(nodeDir, 'gatehouse_user_ca.pub'), 'utf8').trim().split('\n')).toHaveLength(2);
    const exported = await ok('ops', ['ca', 'export', '--format', 'postgres']);
    expect(exported.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    await pgPeer.setDbCa(exported);
    expect((await ok('ops', ['ca', 'export', '--format', 'known_hosts'])).trim().split('\n')).toHaveLength(2);
    await newLogins('init');
    expect(signingCa(keyFile(homes.alice, 'id_ed25519-cert.pub'))).toBe(oldFp.user);
    await stillUp('init');

    // update_clients: the new user and db keys sign client certificates.
    for (const t of TYPES) await ok('ops', ['ca', 'rotate', '--type', t, '--phase', 'update_clients']);
    await newLogins('update_clients');
    expect(signingCa(keyFile(homes.alice, 'id_ed25519-cert.pub'))).toBe(newFp.user);
    await stillUp('update_clients');

    // update_servers: the new host key signs server certificates; the node renews its own.
    for (const t of TYPES) await ok('ops', ['ca', 'rotate', '--type', t, '--phase', 'update_servers']);
    await renewNode();
    expect(signingCa(join(nodeDir, 'gatehouse_host_ed25519_key-cert.pub'))).toBe(newFp.host);
    await newLogins('update_servers');
    await stillUp('update_servers');
    // Still trusted: the old login certificate through the proxy.
    writeFileSync(join(tmp, 'ssh_config'), sshConfigWithoutKeys(await ok('alice', ['config', 'ssh'])));
    const oldStill = await sshWithKey(old.sshKey, `${old.sshKey}-cert.pub`, 'echo old-cert');
    expect(oldStill.stdout, oldStill.stderr).toBe('old-cert\n');

    // standby: the old keys go.
    for (const t of TYPES) {
      const out = await ok('ops', ['ca', 'rotate', '--type', t, '--phase', 'standby']);
      expect(out).toContain(`The ${t} CA is now in phase standby.`);
    }
    const after = await status();
    for (const t of TYPES) {
      expect(after[t]).toMatchObject({ phase: 'standby', last_result: 'completed' });
      expect(after[t]!.keys.map((k) => k.ssh_fingerprint)).toEqual([newFp[t]]);
    }
    const rollback = await gh('ops', ['ca', 'rotate', '--type', 'host', '--phase', 'rollback']);
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toContain('error: the host CA is not rotating: there is nothing to roll back');
    await renewNode();
    expect(readFileSync(join(nodeDir, 'gatehouse_user_ca.pub'), 'utf8').trim().split('\n')).toHaveLength(1);
    const onlyNew = await ok('ops', ['ca', 'export', '--format', 'postgres']);
    expect(onlyNew.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    await pgPeer.setDbCa(onlyNew);
    await newLogins('standby');
    await stillUp('standby');
    const kh = readFileSync(keyFile(homes.alice, 'known_hosts'), 'utf8');
    expect(kh.match(/@cert-authority/g)).toHaveLength(1);

    // The old keys are trusted nowhere now.
    writeFileSync(join(tmp, 'ssh_config'), sshConfigWithoutKeys(await ok('alice', ['config', 'ssh'])));
    const viaProxy = await sshWithKey(old.sshKey, `${old.sshKey}-cert.pub`, 'echo old-cert');
    expect(viaProxy.code).not.toBe(0);
    expect(viaProxy.stdout).toBe('');
    expect(viaProxy.stderr).toContain('Permission denied');
    writeFileSync(
      join(tmp, 'known_hosts_direct'),
      await ok('ops', ['ca', 'export', '--format', 'known_hosts']),
    );
    const logBefore = readFileSync(join(nodeDir, 'sshd.log'), 'utf8').length;
    const direct = await sshDirect(old.proxyCert, 'echo direct');
    expect(direct.code).not.toBe(0);
    expect(direct.stderr).toContain('Permission denied');
    // sshd did not accept it (before standby it logged "Accepted certificate ID ... CA ... <old key>").
    const logAfter = readFileSync(join(nodeDir, 'sshd.log'), 'utf8').slice(logBefore);
    expect(logAfter).toContain('Connection from 127.0.0.1');
    expect(logAfter).not.toContain('Accepted');
    expect(readFileSync(join(nodeDir, 'sshd.log'), 'utf8').slice(0, logBefore)).toContain(
      `CA ED25519 ${oldFp.user}`,
    );
    const pgDirect = await psqlDirect(old.dbCert, old.dbKey);
    expect(pgDirect.code).not.toBe(0);
    expect(pgDirect.stderr).toMatch(/certificate|SSL/i);
    writeFileSync(join(tmp, 'host-cas.pem'), await ok('ops', ['ca', 'export', '--format', 'kube']));
    const tlsOld = await whoami(old.tlsCert, old.tlsKey);
    expect(tlsOld.stdout).not.toContain('"user":"alice"');
    const tlsNew = await whoami(keyFile(homes.alice, 'tls.crt'), keyFile(homes.alice, 'tls.key'));
    expect(tlsNew.stdout).toContain('"user":"alice"');

    // Every step was audited, with the keys' fingerprints.
    const rotations = auditEvents(d).filter((e) => e.type === 'ca.rotate');
    expect(rotations.map((e) => e.type === 'ca.rotate' && `${e.ca}:${e.phase}`)).toEqual(
      ['init', 'update_clients', 'update_servers', 'standby'].flatMap((p) => TYPES.map((t) => `${t}:${p}`)),
    );
    for (const e of rotations) {
      if (e.type !== 'ca.rotate') continue;
      expect(e).toMatchObject({ user: 'ops', code: 'GH1042I' });
      expect(e.old_key?.ssh_fingerprint).toBe(oldFp[e.ca]);
      expect(e.new_key?.ssh_fingerprint).toBe(newFp[e.ca]);
    }

    for (const s of sessions) s.child.stdin.end();
    const codes = await Promise.all(sessions.map((s) => s.exited));
    expect(codes, sessions.map((s) => `${s.what}: ${s.out}`).join('\n')).toEqual([0, 0, 0]);
  }, 600_000);

  it('a restart mid-rotation resumes it from the backend (automatic mode moves on), and rollback works mid-phase', async () => {
    const started = await ok('ops', ['ca', 'rotate', '--type', 'user', '--grace', '1m', '--json']);
    const s0 = JSON.parse(started) as CaStatusView;
    expect(s0).toMatchObject({
      type: 'user',
      phase: 'init',
      mode: 'auto',
      grace: '1m',
      next_phase: 'update_clients',
    });
    const keys = s0.keys.map((k) => k.id);
    // The node trusts the new user key before client certificates come from it.
    await renewNode();
    expect(await d.stop()).toBe(0);
    d = await restartDaemon(d);
    // The step fell due (a third of the grace period) while or after it was down: the restarted gateway takes it.
    const resumed = await waitFor(
      async () => {
        const u = (await status()).user!;
        return u.phase === 'update_clients' ? u : undefined;
      },
      'the restarted gateway to move the user CA to update_clients',
      60_000,
    );
    expect(resumed.keys.map((k) => k.id)).toEqual(keys);
    expect(resumed.started).toBe(s0.started);
    await newLogins('resumed');
    expect(signingCa(keyFile(homes.alice, 'id_ed25519-cert.pub'))).toBe(resumed.keys[0]!.ssh_fingerprint);

    // --manual: the rollback waits for its standby step (automatic mode would take it after 20 s).
    const back = JSON.parse(
      await ok('ops', ['ca', 'rotate', '--type', 'user', '--phase', 'rollback', '--manual', '--json']),
    ) as CaStatusView;
    expect(back).toMatchObject({ phase: 'rollback', mode: 'manual' });
    expect(back.keys.map((k) => [k.role, k.signing])).toEqual([
      ['new', false],
      ['old', true],
    ]);
    const again = await gh('ops', ['ca', 'rotate', '--type', 'user', '--phase', 'rollback']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('error: the user CA is already rolling back');
    await newLogins('rollback');
    expect(signingCa(keyFile(homes.alice, 'id_ed25519-cert.pub'))).toBe(back.keys[1]!.ssh_fingerprint);
    const done = JSON.parse(
      await ok('ops', ['ca', 'rotate', '--type', 'user', '--phase', 'standby', '--json']),
    ) as CaStatusView;
    expect(done).toMatchObject({ phase: 'standby', last_result: 'rolled_back' });
    expect(done.keys.map((k) => k.id)).toEqual([keys[1]]);
    await newLogins('rolled-back');

    const bad = await gh('ops', ['ca', 'rotate', '--type', 'user', '--phase', 'sideways']);
    expect(bad.code).toBe(2); // a usage error
    expect(bad.stderr).toContain("argument 'sideways' is invalid");
  }, 240_000);
});
