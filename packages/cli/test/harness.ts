import {
  type ChildProcess,
  type ChildProcessWithoutNullStreams,
  execFileSync,
  spawn,
} from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AuditEvent } from '@gatehouse/audit';
import { createGateway, loadConfig } from '@gatehouse/core';
import { type Sshd, startSshd } from '@gatehouse/core/testing';
import { expect } from 'vitest';
import { type FixtureApiServer, startFixtureApiServer } from '../../adapter-k8s/test/fixture-apiserver.js';
import { type Mariadb, startMariadb } from '../../adapter-mysql/test/peers.js';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { type ClientRun, runClient } from '../../core/test/helpers.js';

/** The BUILT binary: `npm test` runs `tsc -b` before the suite. */
export const BIN = fileURLToPath(new URL('../bin/gatehouse.js', import.meta.url));
const DIST = fileURLToPath(new URL('../dist/main.js', import.meta.url));
export const PASSWORD = 'correct horse battery staple';

export type Run = ClientRun;

/** Runs `gatehouse ARGS` to completion (30 s cap), with the caller's environment. */
export function run(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Run> {
  // A GATEHOUSE_DATA_DIR from the caller's shell would switch admin verbs to local mode.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.GATEHOUSE_DATA_DIR;
  Object.assign(env, opts.env);
  return runClient(process.execPath, [BIN, ...args], {
    env,
    timeoutMs: 30_000,
    ...(opts.input === undefined ? {} : { input: opts.input }),
  });
}

/**
 * `gatehouse proxy db NAME --port 0` running in the background: resolves with
 * the local port and what it printed once it listens; `stop()` ends it with
 * SIGTERM and waits for its exit.
 */
export async function startProxyDb(
  name: string,
  env: NodeJS.ProcessEnv,
  opts: { args?: string[]; input?: string } = {},
): Promise<{
  port: number;
  out: string;
  err(): string;
  write(text: string): void;
  endInput(): void;
  stop(): Promise<void>;
}> {
  const child = spawn(process.execPath, [BIN, 'proxy', 'db', name, '--port', '0', ...(opts.args ?? [])], {
    env: { ...process.env, ...env },
    // With `input` stdin stays open for more (per-session MFA codes, one a line).
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (opts.input !== undefined) child.stdin.write(opts.input);
  else child.stdin.end();
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    child.stdin.end();
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`proxy db printed no address: ${out}${err}`)), 20_000);
      child.stdout.on('data', (d) => {
        out += d;
        const found = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (found) {
          clearTimeout(timer);
          resolve(Number(found[1]));
        }
      });
      child.once('exit', (code) => reject(new Error(`proxy db exited with ${code}: ${out}${err}`)));
    });
    return {
      port,
      out,
      err: () => err,
      write: (text) => child.stdin.write(text),
      endInput: () => child.stdin.end(),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * `gatehouse plugin run KIND --config FILE` in the background: resolves once
 * it prints its callback port; `stop()` sends SIGTERM and waits for the exit.
 */
export async function startPlugin(
  kind: 'webhook' | 'slack' | 'mattermost' | 'jira' | 'pagerduty',
  configFile: string,
): Promise<{ port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [BIN, 'plugin', 'run', kind, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise((r) => child.once('exit', r));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /callbacks on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
      // A plugin without callbacks (pagerduty) has no port.
      else if (/plugin running; no callbacks/.test(out)) resolve(0);
    });
    child.once('exit', (code) => reject(new Error(`plugin exited ${code}: ${out}${err}`)));
  });
  return {
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** An admin verb on the gateway host (like tctl): `gatehouse --config CONFIG ARGS`; fails the test unless it exits 0. */
export async function admin(d: Daemon, args: string[], input?: string): Promise<Run> {
  const r = await run(['--config', d.configFile, ...args], input === undefined ? {} : { input });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** Every event in the daemon's audit files so far; a line that is not whole JSON fails the test. */
export function auditEvents(d: Daemon): AuditEvent[] {
  const dir = join(d.dataDir, 'audit');
  const out: AuditEvent[] = [];
  for (const f of readdirSync(dir)
    .filter((n) => /^events-.*\.jsonl$/.test(n))
    .sort()) {
    const text = readFileSync(join(dir, f), 'utf8');
    for (const [i, line] of text.trimEnd().split('\n').entries()) {
      if (line === '') continue;
      try {
        out.push(JSON.parse(line) as AuditEvent);
      } catch {
        throw new Error(`${f} line ${i + 1} is not a whole event: ${line.slice(0, 200)}`);
      }
    }
  }
  return out;
}

/** Adds `name` with the access role, one Unix login and PASSWORD. */
export function addAccessUser(d: Daemon, name: string, login: string): Promise<Run> {
  return admin(
    d,
    ['users', 'add', name, '--roles', 'access', '--logins', login, '--password-stdin'],
    `${PASSWORD}\n`,
  );
}

/** Registers the sshd on `port` (127.0.0.1) as node `name`. */
export function addNode(d: Daemon, name: string, port: number, labels: string[] = []): Promise<Run> {
  return admin(d, [
    'nodes',
    'add',
    name,
    '--addr',
    `127.0.0.1:${port}`,
    ...labels.flatMap((l) => ['--label', l]),
  ]);
}

export interface Daemon {
  root: string;
  dataDir: string;
  configFile: string;
  proxy: string;
  pin: string;
  /** The first admin's invite token printed by `start`. */
  adminToken: string;
  out(): string;
  err(): string;
  /** Whether the process still runs (a crash test asserts it survived). */
  alive(): boolean;
  /** The child process's pid (for kill -9 tests). */
  pid: number;
  /** SIGTERM; resolves to the exit code. */
  stop(): Promise<number | null>;
}

/** `gatehouse start --config` in a temp dir, waiting for the first-admin invite line. */
export async function startDaemon(opts: {
  cluster: string;
  extraConfig?: string;
  /** Where the data dir goes (default: in the temp root), e.g. on a small filesystem. */
  dataDir?: string;
  /** host:port to listen on (default 127.0.0.1:0); fixed when a restart must keep the address. */
  listen?: string;
  /**
   * What start prints when it is ready: the first admin's invite (default), or only the
   * listening lines (a backend another gateway already set up has its admin).
   */
  ready?: 'invite' | 'listening';
  /** Sees stderr as it arrives, before start is ready (e.g. what it says while it waits). */
  onStderr?: (text: string) => void;
  /** auth.second_factor (default "off": tests log in with a password alone). */
  secondFactor?: 'otp' | 'off';
}): Promise<Daemon> {
  if (!existsSync(DIST))
    throw new Error(`${DIST} is missing: run \`npx tsc -b\` before the CLI integration tests`);
  const root = mkdtempSync(join(tmpdir(), 'gh-cli-'));
  const dataDir = opts.dataDir ?? join(root, 'data');
  const configFile = join(root, 'gatehouse.yaml');
  writeFileSync(
    configFile,
    `cluster_name: ${opts.cluster}\ndata_dir: ${dataDir}\nlisten: ${opts.listen ?? '127.0.0.1:0'}\n` +
      `auth:\n  second_factor: "${opts.secondFactor ?? 'off'}"\n  login_rate_per_minute: 1000\n${opts.extraConfig ?? ''}`,
  );
  return spawnDaemon(
    root,
    dataDir,
    configFile,
    opts.ready === 'listening' ? LISTENING_LINES : INVITE_LINE,
    undefined,
    opts.onStderr,
  );
}

const INVITE_LINE = /gatehouse accept-invite --proxy (\S+) --ca-pin (sha256:[0-9a-f]{64}) (\S+)/;

/**
 * `gatehouse start` WITHOUT a config file (the embedded quick start) on a
 * fresh data dir in a temp root, with the flags and environment given;
 * `configFile` is empty. Waits for the first-admin invite line.
 */
export async function startEmbedded(
  opts: {
    args?: string[];
    env?: NodeJS.ProcessEnv;
    /** Another gatehouse binary (an installed one). */
    bin?: string;
    /** A stopped daemon's temp root, to start again on its data dir. */
    root?: string;
  } = {},
): Promise<Daemon> {
  const root = opts.root ?? mkdtempSync(join(tmpdir(), 'gh-cli-'));
  const dataDir = join(root, 'data');
  return spawnDaemon(root, dataDir, '', INVITE_LINE, {
    args: ['start', '--data-dir', dataDir, ...(opts.args ?? ['--listen', '127.0.0.1:0'])],
    env: opts.env ?? {},
    bin: opts.bin,
  });
}

/**
 * `gatehouse start` again on a stopped (or killed) daemon's config and data
 * dir. With users that have passwords there is no invite: it waits for the
 * listening lines instead. The port is new unless startDaemon had a fixed `listen`.
 */
export function restartDaemon(d: Daemon): Promise<Daemon> {
  return spawnDaemon(d.root, d.dataDir, d.configFile, LISTENING_LINES);
}

const LISTENING_LINES = /proxy:\s+(\S+)\n\s+web UI:.*\n\s+CA pin:\s+--ca-pin (sha256:[0-9a-f]{64})\n/;

async function spawnDaemon(
  root: string,
  dataDir: string,
  configFile: string,
  ready: RegExp,
  how: { args: string[]; env: NodeJS.ProcessEnv; bin?: string } = {
    args: ['start', '--config', configFile],
    env: {},
  },
  onStderr?: (text: string) => void,
): Promise<Daemon> {
  let out = '';
  let err = '';
  const env: NodeJS.ProcessEnv = { ...process.env, GATEHOUSE_HOME: join(root, 'home-daemon'), ...how.env };
  // A GATEHOUSE_DATA_DIR or GATEHOUSE_MYSQL_LISTEN from the caller's shell would change the daemon under test.
  for (const k of ['GATEHOUSE_DATA_DIR', 'GATEHOUSE_MYSQL_LISTEN']) if (!(k in how.env)) delete env[k];
  const child: ChildProcess = spawn(process.execPath, [how.bin ?? BIN, ...how.args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (d) => {
    err += d;
    onStderr?.(err);
  });
  const m = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`gatehouse start did not print ${ready}:\n${out}\n${err}`)),
      30_000,
    );
    child.on('exit', (code) => reject(new Error(`gatehouse start exited with ${code}:\n${out}\n${err}`)));
    child.stdout!.on('data', (d) => {
      out += d;
      const found = ready.exec(out);
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
    });
  });
  return {
    root,
    dataDir,
    configFile,
    proxy: m[1]!,
    pin: m[2]!,
    adminToken: m[3] ?? '',
    out: () => out,
    err: () => err,
    alive: () => child.exitCode === null && child.signalCode === null,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/**
 * A real sshd for the daemon's cluster, as an admin sets one up: it trusts
 * the user CA (exported through the CLI) and presents a host certificate
 * for node1/127.0.0.1 from the host CA (issued on the data dir).
 */
export async function startNodeSshd(
  d: Daemon,
  extraConfig: string[] = [],
  /** The environment the daemon's data is opened with (e.g. GATEHOUSE_SECRETS_KEY of a shared backend). */
  env: NodeJS.ProcessEnv = {},
): Promise<Sshd> {
  const ca = await run(['ca', 'export', '--format', 'sshd', '--proxy', d.proxy, '--ca-pin', d.pin]);
  if (ca.code !== 0) throw new Error(`ca export failed: ${ca.stderr}`);
  const hostKey = join(d.root, 'ssh_host_ed25519_key');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  const gw = await createGateway({ config: await loadConfig({ file: d.configFile, env }), env });
  try {
    const cert = await gw.authorities.issueSshHostCert({
      publicKey: readFileSync(`${hostKey}.pub`, 'utf8').trim(),
      keyId: 'node1',
      principals: ['node1', '127.0.0.1'],
      validAfter: new Date(),
      validBefore: new Date(Date.now() + 3600e3),
    });
    writeFileSync(`${hostKey}-cert.pub`, `${cert.cert}\n`);
  } finally {
    await gw.close();
  }
  return startSshd({
    dir: d.root,
    userCaKeys: ca.stdout,
    hostKey,
    hostCert: `${hostKey}-cert.pub`,
    extraConfig,
  });
}

/** A CLI command that prints a login URL: it runs in the background until the browser part is done. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, input?: string) {
  return spawnTool(process.execPath, [BIN, ...args], env, input);
}

/**
 * `spawnCli` for any program (kubectl, whose exec plugin prints the page's
 * URL on stderr, which kubectl passes through). The program runs in its own
 * process group and `kill` ends the group: an exec plugin that kubectl
 * started, still waiting for the browser, goes too.
 */
export function spawnTool(program: string, args: string[], env: NodeJS.ProcessEnv, input?: string) {
  const child: ChildProcess = spawn(program, args, {
    env: { ...process.env, ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  // What a user types or pipes (a password for --password-stdin).
  if (input !== undefined) child.stdin!.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b) => {
    stdout += b;
  });
  const url = new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (b) => {
      stderr += b;
      const m = /\n {2}(http\S+)\n/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`exited before printing a URL: ${stdout}${stderr}`)));
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, stdout, stderr })),
  );
  const kill = () => {
    // The whole group, even when the leader (kubectl) has exited and its plugin still waits.
    try {
      process.kill(-child.pid!, 'SIGTERM');
    } catch (e) {
      // The group is gone already (ESRCH): nothing is left to stop.
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  };
  return { url, done, kill };
}

/**
 * A daemon set up for the access request plugins: roles `requester` (may ask
 * for `prod-db`), `prod-db` and `plugin-bot` (reviews `prod-db`), and `users`
 * (name -> role) added and logged in, each with GATEHOUSE_HOME ROOT/home-NAME.
 */
export async function startRequestCluster(
  cluster: string,
  users: [string, string][],
  extraConfig?: string,
): Promise<Daemon> {
  const daemon = await startDaemon({ cluster, ...(extraConfig ? { extraConfig } : {}) });
  const root = daemon.root;
  const ok = async (p: Promise<Run>) => {
    const r = await p;
    if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  };
  const admin = (args: string[], input?: string) =>
    run(['--config', daemon.configFile, ...args], {
      env: { GATEHOUSE_HOME: join(root, 'home-admin') },
      ...(input ? { input } : {}),
    });
  const roles = {
    requester: 'kind: role\nname: requester\nallow:\n  request: { roles: [prod-db] }\n',
    'prod-db': 'kind: role\nname: prod-db\nallow:\n  db_labels: { env: prod }\n  db_users: [app]\n',
    'plugin-bot': 'kind: role\nname: plugin-bot\nallow:\n  review_requests: { roles: [prod-db] }\n',
  };
  for (const [name, text] of Object.entries(roles)) {
    writeFileSync(join(root, `${name}.yaml`), text);
    await ok(admin(['roles', 'create', '-f', join(root, `${name}.yaml`)]));
  }
  for (const [name, role] of users) {
    await ok(admin(['users', 'add', name, '--roles', role, '--password-stdin'], `${PASSWORD}\n`));
    await ok(
      run(['login', '--proxy', daemon.proxy, '--ca-pin', daemon.pin, '--user', name, '--password-stdin'], {
        env: { GATEHOUSE_HOME: join(root, `home-${name}`) },
        input: `${PASSWORD}\n`,
      }),
    );
  }
  return daemon;
}

/**
 * A real PostgreSQL that trusts the gateway's database CA, with `roles` and
 * `databases`, registered as database `name` (protocol postgres).
 */
export async function addPostgres(
  d: Daemon,
  name: string,
  opts: { roles: string[]; databases: string[] },
): Promise<Postgres> {
  const dbCa = await admin(d, ['ca', 'export', '--format', 'postgres']);
  expect(dbCa.code, dbCa.stderr).toBe(0);
  const pg = await startPostgres({ dbCaPem: dbCa.stdout, ...opts });
  await registerDb(d, name, 'postgres', pg.port, pg.serverCaPem);
  return pg;
}

/** `gatehouse db add NAME` for a server on localhost:`port` whose TLS certificate `serverCaPem` signs. */
async function registerDb(
  d: Daemon,
  name: string,
  protocol: 'postgres' | 'mysql',
  port: number,
  serverCaPem: string,
): Promise<void> {
  const caFile = join(d.root, `${protocol}-server-ca-${name}.pem`);
  writeFileSync(caFile, serverCaPem);
  const add = await admin(d, [
    'db',
    'add',
    name,
    '--protocol',
    protocol,
    '--uri',
    `localhost:${port}`,
    '--ca-file',
    caFile,
  ]);
  expect(add.code, add.stderr).toBe(0);
}

/**
 * A real MariaDB that trusts the gateway's database CA, registered as
 * database `name` (protocol mysql; the daemon needs a `mysql_listen`). Each
 * of `users` is an X.509 user whose subject is what the db CA issues to that
 * database user in `cluster` (`/CN=USER/O=CLUSTER`), with all rights on
 * `databases`; `sql` then runs as root (tables, rows).
 */
export async function addMariadb(
  d: Daemon,
  name: string,
  opts: { cluster: string; users: string[]; databases: string[]; sql?: string },
): Promise<Mariadb> {
  const dbCa = await admin(d, ['ca', 'export', '--format', 'mariadb']);
  expect(dbCa.code, dbCa.stderr).toBe(0);
  const db = await startMariadb({ clientCaPem: dbCa.stdout });
  try {
    const statements = [
      ...opts.databases.map((n) => `CREATE DATABASE ${n}`),
      ...opts.users.flatMap((u) => [
        `CREATE USER ${u}@'%' REQUIRE SUBJECT '/CN=${u}/O=${opts.cluster}'`,
        ...opts.databases.map((n) => `GRANT ALL ON ${n}.* TO ${u}@'%'`),
      ]),
      ...(opts.sql ? [opts.sql] : []),
    ];
    await db.sql(statements.join('; '));
    await registerDb(d, name, 'mysql', db.port, db.serverCaPem);
    return db;
  } catch (e) {
    await db.stop();
    throw e;
  }
}

/**
 * The Kubernetes fixture API server (pods web-1...) registered as cluster
 * `name` with its upstream kubeconfig; `close` stops it.
 */
export async function addKubeFixture(d: Daemon, name: string): Promise<FixtureApiServer> {
  // Under the daemon's root: removed with it.
  const dir = mkdtempSync(join(d.root, 'kube-'));
  const fixture = await startFixtureApiServer({ dir });
  const upstream = join(dir, 'upstream.kubeconfig');
  writeFileSync(upstream, fixture.kubeconfig);
  const add = await admin(d, ['kube', 'add', name, '--kubeconfig', upstream]);
  expect(add.code, add.stderr).toBe(0);
  return fixture;
}

/**
 * A long-running program with pipes (an interactive ssh, a join): what it
 * printed so far, and bounded waits on it, so that a failure is reported with
 * the output instead of hanging. Added to `started`, if given, for afterAll
 * to kill what a failed test left running.
 */
export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(
    readonly child: ChildProcessWithoutNullStreams,
    started?: Proc[],
  ) {
    child.stdout.on('data', (x) => {
      this.stdout += x;
    });
    child.stderr.on('data', (x) => {
      this.stderr += x;
    });
    this.exited = new Promise((resolve) => child.on('close', (code) => resolve(code)));
    started?.push(this);
  }

  write(text: string): void {
    this.child.stdin.write(text);
  }

  /** Resolves once `stream` matches `re`; fails with what was printed after `ms` or once it exited. */
  async waitFor(stream: 'stdout' | 'stderr', re: RegExp, ms = 30_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this[stream]);
      if (m) return m;
      if (Date.now() > deadline || this.child.exitCode !== null) {
        throw new Error(
          `no ${re} on ${stream} (exit ${this.child.exitCode})\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The exit code, failing if the program does not exit within `ms`. */
  async exit(ms = 30_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`still running after ${ms} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`)),
        ms,
      );
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
