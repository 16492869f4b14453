/**
 * Three gateways in separate processes (`gatehouse start --config`, the
 * BUILT binary: run `npx tsc -b` first) on one shared backend, once on a
 * real PostgreSQL and once on a real etcd (every assertion on both), haproxy
 * in front sending PROXY protocol v2, and a real sshd: logins through the
 * load balancer, a session on gateway B that a lock taken on A ends,
 * `sessions ls` and `join` from C for a session on B (over the gateways'
 * internal mTLS channel), and B frozen then killed mid-session: its session
 * ends, the next connection through haproxy succeeds on A or C, and `ls` on
 * A reports B as unreachable instead of hanging, until B's registry record
 * expires.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import type { PingResponse, SessionView } from '@gatehouse/core';
import { type Sshd, startEtcd, TEST_LOGIN } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../../adapter-postgres/test/peers.js';
import { waitFor } from '../../core/test/helpers.js';
import {
  addAccessUser,
  addNode,
  admin,
  auditEvents,
  BIN,
  type Daemon,
  PASSWORD,
  Proc,
  startDaemon,
  startNodeSshd,
} from './harness.js';

const SECRETS_KEY_ENV = 'GATEHOUSE_SECRETS_KEY';
const HAPROXY = '/usr/sbin/haproxy';
const CLUSTER = 'hacl';

/**
 * A shared backend the three gateways use: its `backend:` config section
 * (secrets in files under `dir`), and how to stop it.
 */
interface SharedBackend {
  config: string;
  stop(): Promise<void>;
}

const BACKENDS: Record<'postgres' | 'etcd', (dir: string) => Promise<SharedBackend>> = {
  async postgres(dir) {
    const pg = await startPostgres({ hba: ['hostssl all gatehouse 127.0.0.1/32 scram-sha-256'] });
    await pg.sql(`CREATE ROLE gatehouse LOGIN PASSWORD 'pg-pw'`);
    await pg.sql('CREATE DATABASE hasess OWNER gatehouse');
    writeFileSync(join(dir, 'pg-password'), 'pg-pw\n', { mode: 0o600 });
    return {
      config: [
        'backend:',
        '  type: postgres',
        `  uri: "postgres://gatehouse@localhost:${pg.port}/hasess"`,
        `  password_file: ${join(dir, 'pg-password')}`,
        `  tls: { ca_file: ${pg.serverCaFile} }`,
      ].join('\n'),
      stop: () => pg.stop(),
    };
  },
  async etcd() {
    const etcd = await startEtcd();
    return {
      config: ['backend:', '  type: etcd', `  endpoints: [${etcd.endpoint}]`, '  prefix: hasess/'].join('\n'),
      stop: () => etcd.cleanup(),
    };
  },
};

let backend: SharedBackend | undefined;
let root: string;
let sshd: Sshd | undefined;
let haproxy: ChildProcess | undefined;
let lb = '';
const gw: Record<'a' | 'b' | 'c', Daemon | undefined> = { a: undefined, b: undefined, c: undefined };
/** Every long-running client a test started, killed in afterAll if a failed test left it running. */
const started: Proc[] = [];

const home = (who: string) => join(root, `home-${who}`);

function start(who: string, program: string, args: string[]): Proc {
  return new Proc(
    spawn(program, args, {
      env: { ...process.env, GATEHOUSE_DATA_DIR: '', GATEHOUSE_HOME: home(who) },
      stdio: ['pipe', 'pipe', 'pipe'],
    }),
    started,
  );
}

/** `gatehouse ARGS` with `who`'s profile, to completion. */
async function gh(who: string, args: string[], input = '') {
  const p = start(who, process.execPath, [BIN, ...args]);
  p.child.stdin.end(input);
  const code = await p.exit(60_000);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

async function login(who: string, user: string, proxy: string): Promise<void> {
  const pin = gw.a!.pin;
  const r = await gh(
    who,
    ['login', '--proxy', proxy, '--user', user, '--ca-pin', pin, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(r.code, r.stderr).toBe(0);
}

/** An ssh_config for `who`'s profile (its proxy is where `gatehouse proxy ssh` connects). */
async function sshConfig(who: string): Promise<string> {
  const cfg = await gh(who, ['config', 'ssh']);
  expect(cfg.code, cfg.stderr).toBe(0);
  const file = join(root, `ssh_config_${who}`);
  writeFileSync(file, `${cfg.stdout}Host *\n  BatchMode yes\n`);
  return file;
}

async function listOn(
  who: string,
): Promise<{ code: number | null; sessions: SessionView[]; stderr: string }> {
  const r = await gh(who, ['sessions', 'ls', '--json']);
  return {
    code: r.code,
    sessions: r.code === 0 ? (JSON.parse(r.stdout) as SessionView[]) : [],
    stderr: r.stderr,
  };
}

/** Waits until `who`'s listing shows a session of `user` not in `before`; returns it. */
/**
 * An interactive shell on node1 for `profile` (OpenSSH through its profile's
 * gateway), once its prompt is up, and its session as admin-c lists it.
 */
async function openShell(profile: string, user: string): Promise<{ owner: Proc; s: SessionView }> {
  const before = new Set((await listOn('admin-c')).sessions.map((x) => x.id));
  const owner = start(profile, 'ssh', [
    '-F',
    await sshConfig(profile),
    '-tt',
    `${TEST_LOGIN}@node1.${CLUSTER}`,
  ]);
  await owner.waitFor('stdout', /\$ $/);
  return { owner, s: await newSession('admin-c', user, before, owner) };
}

async function newSession(who: string, user: string, before: Set<string>, owner: Proc): Promise<SessionView> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { sessions } = await listOn(who);
    const s = sessions.find((x) => x.user === user && x.kind === 'ssh' && !before.has(x.id));
    if (s) return s;
    if (Date.now() > deadline || owner.child.exitCode !== null) {
      throw new Error(`no new session of ${user}\nstdout: ${owner.stdout}\nstderr: ${owner.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function startHaproxy(backends: Daemon[]): Promise<string> {
  const port = await freePort();
  const cfg = join(root, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 256',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 5m',
      '  timeout server 5m',
      // A gateway that refuses connections (killed) is skipped: retry on another server at once.
      '  retries 3',
      '  option redispatch 1',
      'frontend gatehouse',
      `  bind 127.0.0.1:${port}`,
      '  default_backend gateways',
      'backend gateways',
      '  balance roundrobin',
      ...backends.map((d, i) => `  server gw${i} ${d.proxy} send-proxy-v2`),
      '',
    ].join('\n'),
  );
  const child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy = child;
  let err = '';
  child.stderr!.on('data', (x) => {
    err += x;
  });
  // Ready when the frontend accepts a connection.
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited ${child.exitCode}: ${err}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return `127.0.0.1:${port}`;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** One cluster (three gateways, haproxy, sshd) on a fresh `kind` backend; the suites run one after the other. */
async function setUp(kind: keyof typeof BACKENDS): Promise<void> {
  root = mkdtempSync(join(tmpdir(), 'gh-ha-sessions-'));
  backend = await BACKENDS[kind](root);
  process.env[SECRETS_KEY_ENV] = randomBytes(32).toString('base64');
  const config = (name: string) =>
    [
      backend!.config,
      'listener:',
      '  proxy_protocol_trusted: [127.0.0.1/32]',
      `gateway: { name: ${name} }`,
      '',
    ].join('\n');
  gw.a = await startDaemon({ cluster: CLUSTER, extraConfig: config('gw-a') });
  gw.b = await startDaemon({ cluster: CLUSTER, extraConfig: config('gw-b'), ready: 'listening' });
  gw.c = await startDaemon({ cluster: CLUSTER, extraConfig: config('gw-c'), ready: 'listening' });
  // B and C find the first admin without a password: they keep A's invite (a new one would cancel
  // it) and say so.
  for (const d of [gw.b, gw.c]) {
    await waitFor(
      () => d.out().includes('(admin) has an invite pending') || undefined,
      'the pending invite notice',
      20_000,
    );
    expect(d.out()).not.toContain('accept-invite');
  }
  lb = await startHaproxy([gw.a, gw.b, gw.c]);
  // A's invite, accepted through the load balancer after B and C started, still works.
  const invite = await gh(
    'admin',
    ['accept-invite', '--proxy', lb, '--ca-pin', gw.a.pin, gw.a.adminToken, '--password-stdin'],
    `${PASSWORD}\n`,
  );
  expect(invite.code, invite.stderr).toBe(0);
  // Everyone logs in through the load balancer, whichever gateway answers.
  await login('admin', 'admin', lb);
  for (const u of ['alice', 'carol']) await addAccessUser(gw.a, u, TEST_LOGIN);
  sshd = await startNodeSshd(gw.a, ['PrintMotd no', 'PrintLastLog no'], {
    [SECRETS_KEY_ENV]: process.env[SECRETS_KEY_ENV],
  });
  await addNode(gw.a, 'node1', sshd.port);
}

async function tearDown(): Promise<void> {
  for (const p of started.splice(0)) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  if (haproxy && haproxy.exitCode === null) {
    const gone = new Promise((r) => haproxy!.once('exit', r));
    haproxy.kill('SIGTERM');
    await gone;
  }
  haproxy = undefined;
  await sshd?.stop();
  sshd = undefined;
  for (const d of Object.values(gw)) {
    if (!d) continue;
    // A frozen gateway (SIGSTOP) must be woken to die of SIGTERM.
    if (d.alive()) process.kill(d.pid, 'SIGCONT');
    await d.stop();
  }
  await backend?.stop();
  backend = undefined;
  delete process.env[SECRETS_KEY_ENV];
  if (root) rmSync(root, { recursive: true, force: true });
  for (const [k, d] of Object.entries(gw)) {
    if (d) rmSync(d.root, { recursive: true, force: true });
    gw[k as keyof typeof gw] = undefined;
  }
}

describe.each(Object.keys(BACKENDS) as (keyof typeof BACKENDS)[])(
  'three gateways behind haproxy on one %s',
  (kind) => {
    beforeAll(() => setUp(kind), 180_000);
    afterAll(tearDown);

    it('each gateway names itself and its two live peers (ping and gatehouse status)', async () => {
      const st = await gh('admin', ['status', '--json']);
      expect(st.code, st.stderr).toBe(0);
      const s = JSON.parse(st.stdout) as { gateway: PingResponse['gateway']; peers: PingResponse['peers'] };
      // Through haproxy: any of the three answers, and it lists the other two.
      const all = ['gw-a', 'gw-b', 'gw-c'];
      expect(all).toContain(s.gateway?.name);
      expect(s.peers?.map((p) => p.name).sort()).toEqual(all.filter((n) => n !== s.gateway?.name));
    });

    it('a session on B: ls and join from C, then a lock taken on A ends it', async () => {
      // alice is pinned to gateway B (her profile's proxy is B's own address).
      await login('alice', 'alice', gw.b!.proxy);
      await login('admin-c', 'admin', gw.c!.proxy);
      const { owner, s } = await openShell('alice', 'alice');
      expect(s).toMatchObject({ user: 'alice', server: 'node1', gateway: 'gw-b' });

      // admin joins from C: the terminal stream is relayed from B.
      const joiner = start('admin-c', process.execPath, [BIN, 'join', s.id]);
      await joiner.waitFor('stderr', /Joined session/);
      owner.write('echo relayed-$((6*7))\n');
      await owner.waitFor('stdout', /relayed-42/);
      await joiner.waitFor('stdout', /relayed-42/);
      joiner.write('\x1d');
      expect(await joiner.exit()).toBe(0);

      // Audited on both: C decided the join, B relayed it.
      const joinsOn = (d: Daemon) =>
        auditEvents(d).filter(
          (e): e is Extract<AuditEvent, { type: 'session.join' }> =>
            e.type === 'session.join' && e.session_id === s.id,
        );
      expect(joinsOn(gw.c!)).toMatchObject([{ user: 'admin', owner: 'alice', success: true }]);
      expect(joinsOn(gw.b!)).toMatchObject([{ user: 'admin', owner: 'alice', via_gateway: 'gw-c' }]);

      // A lock on gateway A ends the session on B (B hears of it through the backend's change feed).
      await admin(gw.a!, ['locks', 'add', '--user', 'alice', '--message', 'ha test']);
      await owner.exit();
      expect(owner.stdout + owner.stderr).toMatch(/lock|locked/i);
      const after = await listOn('admin-c');
      expect(after.sessions.map((x) => x.id)).not.toContain(s.id);
    });

    it('kill from C ends a session that runs on B', async () => {
      await login('carol-b', 'carol', gw.b!.proxy);
      const { owner, s } = await openShell('carol-b', 'carol');
      expect(s.gateway).toBe('gw-b');
      // The operator's command on C's host (no login: the data dir's CAs give it a channel certificate) sees it too.
      const local = JSON.parse((await admin(gw.c!, ['sessions', 'ls', '--json'])).stdout) as SessionView[];
      expect(local.find((x) => x.id === s.id)).toMatchObject({ user: 'carol', gateway: 'gw-b' });
      const kill = await gh('admin-c', ['sessions', 'kill', s.id]);
      expect(kill.code, kill.stderr).toBe(0);
      await owner.exit();
      expect(owner.stdout + owner.stderr).toMatch(/ended by admin/);
    });

    it('B frozen then killed mid-session: ls on A reports it unreachable, its session ends, haproxy sends the next one to A or C', async () => {
      const { owner, s } = await openShell('carol-b', 'carol');
      expect(s.gateway).toBe('gw-b');

      await login('admin-a', 'admin', gw.a!.proxy);
      // Frozen: B's port still accepts TCP connections but nothing answers, the worst case for a listing.
      process.kill(gw.b!.pid, 'SIGSTOP');
      const frozen = await listOn('admin-a');
      expect(frozen.code, frozen.stderr).toBe(0);
      expect(frozen.stderr).toMatch(/gateway gw-b did not answer/);
      expect(frozen.sessions.map((x) => x.id)).not.toContain(s.id);

      process.kill(gw.b!.pid, 'SIGKILL');
      await owner.exit();
      const dead = await listOn('admin-a');
      expect(dead.code, dead.stderr).toBe(0);
      expect(dead.sessions.map((x) => x.id)).not.toContain(s.id);

      // carol through the load balancer: B refuses connections now, so haproxy hands her to A or C.
      await login('carol-lb', 'carol', lb);
      const ssh = start('carol-lb', 'ssh', [
        '-F',
        await sshConfig('carol-lb'),
        `${TEST_LOGIN}@node1.${CLUSTER}`,
        'echo',
        'after-b',
      ]);
      expect(await ssh.exit(), ssh.stderr).toBe(0);
      expect(ssh.stdout).toContain('after-b');
      const st = await gh('carol-lb', ['status', '--json']);
      expect(['gw-a', 'gw-c']).toContain(
        (JSON.parse(st.stdout) as { gateway: { name: string } }).gateway.name,
      );

      // Once B's record expires (it stopped renewing), A neither asks it nor names it as a peer.
      const gone = await waitFor(
        async () => {
          const l = await listOn('admin-a');
          return l.code === 0 && !l.stderr.includes('gw-b') ? l : undefined;
        },
        "gw-b's registry record to expire",
        60_000,
      );
      expect(gone.stderr).not.toMatch(/did not answer/);
      // status answers from the watched registry cache: etcd deletes an expired record about a
      // second after its TTL (reads hide it from the TTL on), so the watch may deliver it later.
      const after = await waitFor(
        async () => {
          const ping = await gh('admin-a', ['status', '--json']);
          expect(ping.code, ping.stderr).toBe(0);
          const s = JSON.parse(ping.stdout) as {
            gateway: PingResponse['gateway'];
            peers: PingResponse['peers'];
          };
          return s.peers?.some((p) => p.name === 'gw-b') ? undefined : s;
        },
        'gatehouse status on A to stop naming gw-b',
        15_000,
      );
      expect(after.gateway?.name).toBe('gw-a');
      expect(after.peers?.map((p) => p.name)).toEqual(['gw-c']);
    });
  },
);
