/**
 * The session lifecycle matrix (issue "Core owns every live session"): real
 * clients of every protocol through one real `gatehouse start` (the BUILT
 * binary; run `npx tsc -b` first), each ended by each trigger.
 *
 * Clients: psql and the mariadb client (one busy in a query, one idle),
 * kubectl exec and kubectl port-forward (the fixture API server), OpenSSH
 * (through the block of `gatehouse config ssh`) to a real sshd, and the web
 * terminal (core's terminal WebSocket with a web session cookie, as the
 * browser opens it). Triggers: a lock on the user, the user deleted, a lock
 * on one of the user's roles, the certificate (and web session) expiring,
 * and `gatehouse sessions kill`.
 *
 * Per trigger one fresh user starts every client at once; each session must
 * be listed by `sessions ls --json` with its protocol while it runs, end
 * after the trigger with the reason in the client's own words, and leave an
 * end audit event whose reason names the trigger. How long each took is
 * printed at the end (not asserted: timed assertions do not belong in
 * tests). GATEHOUSE_LIFECYCLE_ROUNDS=N repeats the matrix N times (fresh
 * users) for better figures.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '@gatehouse/audit';
import { parseTerminalServerFrame, type SessionView, type TerminalServerFrame } from '@gatehouse/core';
import { freePort, type Sshd } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  type FixtureApiServer,
  POD_ECHO_PORT,
  startFixtureApiServer,
} from '../../adapter-k8s/test/fixture-apiserver.js';
import { type Mariadb, startMariadb } from '../../adapter-mysql/test/peers.js';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { addNode, type Daemon, PASSWORD, type Run, run, startDaemon, startNodeSshd } from './harness.js';

const CLUSTER = 'life';
/** The database user every Gatehouse user of this test connects as (PostgreSQL role, MariaDB account). */
const DB_USER = 'appuser';
/** How long a client may take to show an end before the test says it never did (a hang guard, not a bound). */
const END_GUARD_MS = 30_000;
/**
 * Certificate and web session lifetime of the expiry round: long enough to
 * log in and start every client, which on a loaded machine takes a while, so
 * twice what the slowest round before it took (30 s when it runs alone).
 */
let slowestStartMs = 0;
const shortTtl = () => `${Math.ceil((slowestStartMs > 0 ? 2 * slowestStartMs + 5_000 : 30_000) / 1000)}s`;
const ROUNDS = Math.max(1, Number(process.env.GATEHOUSE_LIFECYCLE_ROUNDS ?? 1) || 1);

let d: Daemon;
let sshd: Sshd;
let pg: Postgres;
let maria: Mariadb;
let kubeApi: FixtureApiServer;
let root: string;
let hostCaPem: string;
const unixLogin = `ghl${randomBytes(3).toString('hex')}`;
const adminHome = () => join(d.root, 'home-admin');
/** Every client process and socket started, stopped in afterAll if a failed test left one running. */
const started: { stop(): Promise<void> }[] = [];

// ------------------------------------------------------------------ helpers

/** Text a client showed, with the time each match first appeared. */
class Seen {
  text = '';
  readonly #waiters = new Set<() => void>();

  add(s: string): void {
    this.text += s;
    for (const w of [...this.#waiters]) w();
  }

  /** When `re` first matched (at once if it already does); never resolves otherwise. */
  when(re: RegExp): Promise<number> {
    return new Promise((resolve) => {
      const check = () => {
        if (!re.test(this.text)) return false;
        this.#waiters.delete(check);
        resolve(Date.now());
        return true;
      };
      if (!check()) this.#waiters.add(check);
    });
  }
}

/** A running client program: everything it printed (stdout and stderr apart and together) and its exit. */
class Proc {
  readonly child: ChildProcess;
  readonly out = new Seen();
  readonly err = new Seen();
  readonly all = new Seen();
  /** Resolves with the time it exited. */
  readonly exited: Promise<number>;
  code: number | null = null;

  constructor(program: string, args: string[], env: NodeJS.ProcessEnv, stdin: 'pipe' | 'ignore' = 'ignore') {
    this.child = spawn(program, args, {
      env: { PATH: process.env.PATH, ...env },
      stdio: [stdin, 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (b: Buffer) => {
      this.out.add(b.toString());
      this.all.add(b.toString());
    });
    this.child.stderr!.on('data', (b: Buffer) => {
      this.err.add(b.toString());
      this.all.add(b.toString());
    });
    // A client that already left makes a write to its stdin fail (EPIPE): its exit says so.
    this.child.stdin?.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      this.child.once('close', (code) => {
        this.code = code;
        resolve(Date.now());
      }),
    );
    started.push(this);
  }

  write(s: string): void {
    this.child.stdin!.write(s);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  describe(): string {
    return `exit ${this.child.exitCode ?? this.child.signalCode ?? 'running'}\nstdout: ${this.out.text}\nstderr: ${this.err.text}`;
  }

  async stop(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** `p` within `ms`, or an error naming `what` (a guard against hangs, not a timing assertion). */
async function guard<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(what())), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `fn` until it returns something other than undefined (every 100 ms, up to `ms`). */
async function until<T>(fn: () => Promise<T | undefined>, what: () => string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `gatehouse ARGS` as the logged-in admin (a remote admin: live sessions are the daemon's). */
async function asAdmin(args: string[], input?: string): Promise<Run> {
  const r = await run(args, {
    env: { GATEHOUSE_HOME: adminHome() },
    ...(input === undefined ? {} : { input }),
  });
  expect(r.code, `gatehouse ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

async function listSessions(): Promise<SessionView[]> {
  return JSON.parse((await asAdmin(['sessions', 'ls', '--json'])).stdout) as SessionView[];
}

async function auditEvents(types: string[], user?: string): Promise<AuditEvent[]> {
  const r = await asAdmin([
    'audit',
    'search',
    '--type',
    types.join(','),
    ...(user ? ['--user', user] : []),
    '--since',
    '1h',
    '--limit',
    '500',
    '--json',
  ]);
  return (JSON.parse(r.stdout) as { events: AuditEvent[] }).events;
}

/** A Gatehouse user of this test with their own GATEHOUSE_HOME, HOME (client configs) and kubeconfig. */
interface User {
  name: string;
  home: string;
  env: NodeJS.ProcessEnv;
  kubeconfig: string;
  sshConfig: string;
  /** The web UI's session cookie. */
  cookie: string;
}

function newUser(name: string): User {
  const home = join(root, `home-${name}`);
  mkdirSync(home, { recursive: true });
  return {
    name,
    home,
    env: {
      GATEHOUSE_HOME: join(home, '.gatehouse'),
      HOME: home,
      PGSERVICEFILE: join(home, '.pg_service.conf'),
    },
    kubeconfig: join(home, 'kubeconfig'),
    sshConfig: join(home, 'ssh_config'),
    cookie: '',
  };
}

async function as(u: User, args: string[], input?: string): Promise<Run> {
  const r = await run(args, { env: u.env, ...(input === undefined ? {} : { input }) });
  expect(r.code, `${u.name}: gatehouse ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

/** `gatehouse login` (certificates of `ttl`, default the role maximum) and everything the clients read from it. */
async function login(u: User, ttl?: string): Promise<void> {
  await as(
    u,
    [
      'login',
      '--proxy',
      d.proxy,
      '--ca-pin',
      d.pin,
      '--user',
      u.name,
      '--password-stdin',
      ...(ttl ? ['--ttl', ttl] : []),
    ],
    `${PASSWORD}\n`,
  );
  // Database certificates are derived from the login's and end with it.
  await Promise.all([
    as(u, ['db', 'login', 'orders', '--db-user', DB_USER, '--db-name', 'app']),
    as(u, ['db', 'login', 'shop', '--db-user', DB_USER, '--db-name', 'shop']),
    as(u, ['kube', 'login', 'prod', '--kubeconfig', u.kubeconfig]),
    as(u, ['config', 'ssh']).then((r) => writeFileSync(u.sshConfig, r.stdout)),
    webLogin(u, ttl).then((c) => {
      u.cookie = c;
    }),
  ]);
}

/** An HTTPS request to the daemon's API, as the web UI sends it. */
function api(
  method: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const [host, port] = d.proxy.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = request(
      {
        host,
        port: Number(port),
        method,
        path,
        ca: hostCaPem,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
          ...headers,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** Signs in to the web UI (POST /v1/login): the session cookie, with a lifetime of `ttl` when given. */
async function webLogin(u: User, ttl?: string): Promise<string> {
  const r = await api('POST', '/v1/login', { user: u.name, password: PASSWORD, ...(ttl ? { ttl } : {}) });
  expect(r.status, r.body).toBe(200);
  return String(r.headers['set-cookie']).split(';')[0]!;
}

// ------------------------------------------------------------------ clients

/** One client session of the matrix, started and running. */
interface Running {
  /** Its id in `sessions ls`, once the listing matched it. */
  id?: string | undefined;
  /** Resolves with the time the client showed that the session ended (the reason, or its exit). */
  ended: Promise<number>;
  /** What the client showed, for assertions and failure messages. */
  shown(): string;
  /** An idle client notices the end only when used: this uses it (after the end). */
  poke?(): void;
  /** Resolves once the statement the client was running is gone from the database too. */
  statementGone?(): Promise<unknown>;
  stop(): Promise<void>;
}

interface ClientCase {
  name: string;
  /** `protocol` in `sessions ls --json`. */
  protocol: string;
  endEvent: 'session.end' | 'db.session.end' | 'kube.exec.end' | 'kube.portforward.end';
  /** Idle clients are told of the end only when they next talk: no client-side timing for them. */
  idle?: boolean;
  start(u: User, tag: string): Promise<Running>;
  /** Asserts the client's own words carry `reason` (a regex source). */
  expectShown(r: Running, reason: string): void;
  /** The session is listed: its entry among `mine` (the user's sessions of this protocol). */
  pick?(r: Running, mine: SessionView[]): SessionView | undefined;
}

/** psql through Gatehouse: `select pg_sleep(120)` running (busy), or waiting for its next line on stdin (idle). */
function psqlCase(idle: boolean): ClientCase {
  return {
    name: idle ? 'psql (idle)' : 'psql',
    protocol: 'postgres',
    endEvent: 'db.session.end',
    idle,
    async start(u, tag) {
      const app = `${tag}-${idle ? 'idle' : 'busy'}`;
      const env = { ...u.env, PGAPPNAME: app };
      const p = idle
        ? new Proc('psql', ['-X', '-v', 'VERBOSITY=verbose', '-At', 'service=orders'], env, 'pipe')
        : new Proc(
            'psql',
            ['-X', '-v', 'VERBOSITY=verbose', '-At', 'service=orders', '-c', 'select pg_sleep(120)'],
            env,
          );
      if (idle) p.write("select 'psql-' || 'ready';\n");
      // Running for real: the sleep is on the server (busy), or the first answer came back (idle).
      const sleeping = async () =>
        pg.sql(
          `select count(*) from pg_stat_activity where application_name = '${app}' and state = 'active' and query like 'select pg_sleep%'`,
        );
      await guard<unknown>(
        idle
          ? p.out.when(/psql-ready/)
          : until(
              async () => (await sleeping()) === '1' || undefined,
              () => `psql's pg_sleep on the server\n${p.describe()}`,
            ),
        20_000,
        () => `${idle ? 'idle' : 'busy'} psql did not start\n${p.describe()}`,
      );
      return {
        ended: Promise.race([p.err.when(/57P01/), p.exited]),
        shown: () => p.all.text,
        poke: () => p.write("select 'after';\n"),
        ...(idle
          ? {}
          : {
              statementGone: () =>
                until(
                  async () => (await sleeping()) === '0' || undefined,
                  () => `the end of pg_sleep on the server after psql's session ended`,
                ),
            }),
        stop: () => p.stop(),
      };
    },
    expectShown(r, reason) {
      // psql prints the FATAL ErrorResponse with its SQLSTATE (VERBOSITY verbose), then that the server closed.
      expect(r.shown()).toMatch(new RegExp(`FATAL:  57P01: terminating connection: Gatehouse: ${reason}`));
    },
  };
}

/** The mariadb client: `SELECT SLEEP(120)` running (busy), or idle in batch mode reading stdin. */
function mariadbCase(idle: boolean): ClientCase {
  return {
    name: idle ? 'mariadb (idle)' : 'mariadb',
    protocol: 'mysql',
    endEvent: 'db.session.end',
    idle,
    async start(u, tag) {
      const mark = `${tag}-${idle ? 'idle' : 'busy'}`;
      const base = ['--defaults-group-suffix=_shop', '-N', '-B', '--unbuffered'];
      const p = idle
        ? new Proc('mariadb', base, u.env, 'pipe')
        : new Proc('mariadb', [...base, '-e', `SELECT SLEEP(120), '${mark}'`], u.env);
      if (idle) p.write("SELECT CONCAT('maria', '-ready');\n");
      const sleeping = async () =>
        (
          await maria.sql(
            `SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(120), ''${mark}''%'`,
          )
        ).trim();
      await guard<unknown>(
        idle
          ? p.out.when(/maria-ready/)
          : until(
              async () => (await sleeping()) === '1' || undefined,
              () => `mariadb's SLEEP on the server\n${p.describe()}`,
            ),
        20_000,
        () => `${idle ? 'idle' : 'busy'} mariadb did not start\n${p.describe()}`,
      );
      return {
        ended: Promise.race([p.err.when(/ERROR 1927/), p.exited]),
        shown: () => p.all.text,
        poke: () => p.write("SELECT 'after';\n"),
        ...(idle
          ? {}
          : {
              statementGone: () =>
                until(
                  async () => (await sleeping()) === '0' || undefined,
                  () => `the end of SLEEP on the server after the mariadb session ended`,
                ),
            }),
        stop: () => p.stop(),
      };
    },
    expectShown(r, reason) {
      // ER_CONNECTION_KILLED as the answer to the running query (busy) or to the next one (idle).
      expect(r.shown()).toMatch(new RegExp(`ERROR 1927 \\(70100\\)( at line \\d+)?: Gatehouse: ${reason}`));
    },
  };
}

function kubectlArgs(u: User, args: string[]): string[] {
  return ['--kubeconfig', u.kubeconfig, '--cache-dir', join(u.home, 'kcache'), ...args];
}

const kubectlExecCase: ClientCase = {
  name: 'kubectl exec',
  protocol: 'kube-exec',
  endEvent: 'kube.exec.end',
  async start(u) {
    const p = new Proc(
      '/usr/bin/kubectl',
      kubectlArgs(u, ['exec', 'web-1', '--', 'sh', '-c', 'echo exec-ready; exec sleep 120']),
      {
        HOME: u.home,
      },
    );
    await guard(p.out.when(/exec-ready/), 30_000, () => `kubectl exec did not start\n${p.describe()}`);
    return {
      ended: Promise.race([p.err.when(/Gatehouse: /), p.exited]),
      shown: () => p.all.text,
      stop: () => p.stop(),
    };
  },
  expectShown(r, reason) {
    // kubectl prints the Failure Status of the error channel.
    expect(r.shown()).toMatch(new RegExp(`Gatehouse: ${reason}`));
  },
};

/** Connects to a forwarded port, sends `data`, half-closes and returns what came back. */
function roundTrip(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.on('data', (b: Buffer) => {
      got += b;
    });
    sock.on('error', reject);
    sock.on('end', () => resolve(got));
    sock.end(data);
  });
}

const kubectlPortForwardCase: ClientCase = {
  name: 'kubectl port-forward',
  protocol: 'kube-portforward',
  endEvent: 'kube.portforward.end',
  async start(u) {
    const port = await freePort();
    const p = new Proc(
      '/usr/bin/kubectl',
      kubectlArgs(u, ['port-forward', 'pod/web-1', `${port}:${POD_ECHO_PORT}`, '--address', '127.0.0.1']),
      { HOME: u.home },
    );
    await guard(
      p.out.when(/Forwarding from/),
      30_000,
      () => `kubectl port-forward did not start\n${p.describe()}`,
    );
    expect(await roundTrip(port, 'through the tunnel')).toBe('through the tunnel');
    return {
      // kubectl has no words for why the tunnel closed: it notices the loss and exits.
      ended: p.exited,
      shown: () => p.all.text,
      stop: () => p.stop(),
    };
  },
  expectShown(r) {
    // All kubectl can say: the tunnel is gone (the reason is in the audit event and sessions ls).
    expect(r.shown()).toMatch(/lost connection to pod/);
  },
};

const opensshCase: ClientCase = {
  name: 'OpenSSH',
  protocol: 'ssh',
  endEvent: 'session.end',
  async start(u) {
    const p = new Proc(
      'ssh',
      [
        '-F',
        u.sshConfig,
        '-o',
        'BatchMode=yes',
        `${unixLogin}@node1.${CLUSTER}`,
        'echo ssh-ready; exec sleep 120',
      ],
      u.env,
    );
    await guard(p.out.when(/ssh-ready/), 30_000, () => `ssh did not start\n${p.describe()}`);
    return {
      ended: Promise.race([p.err.when(/Gatehouse: /), p.exited]),
      shown: () => p.all.text,
      stop: () => p.stop(),
    };
  },
  expectShown(r, reason) {
    // The message on the session's stderr, then OpenSSH's exit.
    expect(r.shown()).toMatch(new RegExp(`Gatehouse: ${reason}`));
  },
  pick: (_r, mine) => mine.find((s) => !s.interactive),
};

/** The web terminal: core's terminal WebSocket with the web UI's cookie and Origin, as the browser opens it. */
const webTerminalCase: ClientCase = {
  name: 'web terminal',
  protocol: 'ssh',
  endEvent: 'session.end',
  async start(u) {
    const q = new URLSearchParams({ node: 'node1', login: unixLogin, cols: '100', rows: '30' });
    const ws = new WebSocket(`wss://${d.proxy}/v1/ws/terminal?${q}`, {
      ca: hostCaPem,
      headers: { cookie: u.cookie, origin: `https://${d.proxy}` },
    });
    const seen = new Seen();
    const frames: TerminalServerFrame[] = [];
    let closed = 0;
    let closeCode = 0;
    const closedP = new Promise<number>((resolve) =>
      ws.once('close', (code) => {
        closed = Date.now();
        closeCode = code;
        resolve(closed);
      }),
    );
    ws.on('error', () => undefined);
    ws.on('message', (data: Buffer, binary) => {
      if (binary) return seen.add(data.toString());
      const f = parseTerminalServerFrame(data.toString());
      if (!f) return;
      frames.push(f);
      // What the tab shows for the frame (packages/web/src/lib/terminal.ts describeEnd).
      if (f.type === 'end' && f.reason) seen.add(`\n[tab] Session ended: ${f.reason}\n`);
      if (f.type === 'error') seen.add(`\n[tab] ${f.message}\n`);
      if (f.type === 'session') seen.add(`\n[session ${f.session_id}]\n`);
    });
    const stop = async () => {
      if (!closed) ws.terminate();
      await closedP;
    };
    started.push({ stop });
    const shown = () => `${seen.text}\n[close ${closeCode || 'none'}]`;
    await guard(seen.when(/\[session /), 30_000, shown);
    ws.send(Buffer.from('echo web-""ready\r'), { binary: true });
    await guard(seen.when(/web-ready/), 30_000, shown);
    const id = frames.find((f) => f.type === 'session');
    return {
      id: id?.type === 'session' ? id.session_id : undefined,
      ended: Promise.race([seen.when(/\[tab\] /), closedP]),
      shown,
      stop,
    };
  },
  expectShown(r, reason) {
    // The end frame's reason, shown by the tab as "Session ended: <reason>" (and the line on the
    // terminal); or, when the socket's own check came first, its error frame with the same reason.
    expect(r.shown()).toMatch(new RegExp(`\\[tab\\] (Session ended: )?${reason}`));
  },
  pick: (r, mine) => mine.find((s) => s.id === r.id),
};

const CLIENTS: ClientCase[] = [
  psqlCase(false),
  psqlCase(true),
  mariadbCase(false),
  mariadbCase(true),
  kubectlExecCase,
  kubectlPortForwardCase,
  opensshCase,
  webTerminalCase,
];

// ------------------------------------------------------------------ triggers

interface Fired {
  /** When the trigger took effect, for each session id (or '*': all of them). */
  t0: Map<string, number>;
}

interface TriggerCase {
  name: 'lock' | 'delete' | 'role lock' | 'expiry' | 'kill';
  /** Extra roles for the user (the role lock locks one). */
  roles?(round: number): string[];
  /** Certificate (and web session) lifetime. */
  ttl?(): string;
  fire(u: User, sessions: SessionView[], round: number): Promise<Fired>;
  /** What the clients and the audit log must say (a regex source). */
  reason(u: User, round: number): string;
}

/**
 * A preload for the CLI: prints when it sends each request that changes
 * something (not GET), so a trigger's time is when the admin's request left
 * `gatehouse`, not when a busy machine got around to starting Node.
 */
const STAMP_PRELOAD = `const dc = require('node:diagnostics_channel');
dc.subscribe('http.client.request.start', ({ request }) => {
  if (request.method !== 'GET') process.stderr.write('gh-request-sent ' + Date.now() + '\\n');
});
`;
let stampFile = '';

/** An admin verb that changes something; resolves with when its request was sent. */
async function trigger(args: string[]): Promise<{ at: number; r: Run }> {
  const r = await run(args, {
    env: {
      GATEHOUSE_HOME: adminHome(),
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${stampFile}`,
    },
  });
  expect(r.code, `gatehouse ${args.join(' ')}: ${r.stderr}`).toBe(0);
  const sent = [...r.stderr.matchAll(/^gh-request-sent (\d+)$/gm)].at(-1);
  expect(sent, r.stderr).toBeDefined();
  return { at: Number(sent![1]), r };
}

const TRIGGERS: TriggerCase[] = [
  {
    name: 'lock',
    async fire(u, _s, round) {
      const { at } = await trigger(['users', 'lock', u.name, '--message', `incident ${round}`]);
      return { t0: new Map([['*', at]]) };
    },
    reason: (u, round) => esc(`access locked (user ${u.name}): incident ${round}`),
  },
  {
    name: 'delete',
    async fire(u) {
      const { at } = await trigger(['users', 'rm', u.name]);
      return { t0: new Map([['*', at]]) };
    },
    reason: (u) => esc(`user "${u.name}" no longer exists`),
  },
  {
    name: 'role lock',
    roles: (round) => [`contractors-${round}`],
    async fire(_u, _s, round) {
      const { at } = await trigger([
        'locks',
        'add',
        '--role',
        `contractors-${round}`,
        '--message',
        'contract ended',
      ]);
      return { t0: new Map([['*', at]]) };
    },
    reason: (_u, round) => esc(`access locked (role contractors-${round}): contract ended`),
  },
  {
    name: 'expiry',
    ttl: shortTtl,
    async fire(_u, sessions) {
      // Nothing to do but wait: each session ends when its grant does (listed as `expires`).
      return { t0: new Map(sessions.map((s) => [s.id, Date.parse(s.expires)])) };
    },
    reason: () => '(your access expired at|certificate of \\S+ expired at)',
  },
  {
    name: 'kill',
    async fire(_u, sessions) {
      // One `gatehouse sessions kill` per session, one after another as an admin types them
      // (eight Node processes starting at once would starve the gateway on a small machine).
      const t0 = new Map<string, number>();
      for (const s of sessions) {
        const { at, r } = await trigger(['sessions', 'kill', s.id]);
        expect(r.stdout).toBe(`Session ${s.id} ended.\n`);
        t0.set(s.id, at);
      }
      return { t0 };
    },
    reason: () => esc('ended by admin'),
  },
];

// ------------------------------------------------------------------ setup

/**
 * Milliseconds from the trigger (when the admin's request left `gatehouse`;
 * for expiry, the grant's `expires` as sessions ls shows it) to when the
 * client showed the end (busy clients; an idle one hears it when used next)
 * and to the time of the session's end audit event (the gateway ending it).
 */
interface Timing {
  trigger: string;
  client: string;
  clientMs?: number | undefined;
  auditMs: number;
}
const timings: Timing[] = [];

beforeAll(async () => {
  execFileSync('useradd', ['-m', '-s', '/bin/bash', unixLogin]);
  execFileSync('usermod', ['-p', '*', unixLogin]);
  root = mkdtempSync(join(tmpdir(), 'gh-life-'));
  stampFile = join(root, 'stamp.cjs');
  writeFileSync(stampFile, STAMP_PRELOAD);
  const mysqlPort = await freePort();
  d = await startDaemon({ cluster: CLUSTER, extraConfig: `mysql_listen: 127.0.0.1:${mysqlPort}\n` });
  const pw = `${PASSWORD}\n`;
  const invite = await run(
    ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
    {
      env: { GATEHOUSE_HOME: adminHome() },
      input: pw,
    },
  );
  expect(invite.code, invite.stderr).toBe(0);
  await asAdmin(['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'], pw);
  hostCaPem = (await asAdmin(['ca', 'export', '--format', 'x509', '--type', 'host'])).stdout;
  const dbCa = (await asAdmin(['ca', 'export', '--format', 'postgres', '--type', 'db'])).stdout;
  const mariaCa = (await asAdmin(['ca', 'export', '--format', 'mariadb', '--type', 'db'])).stdout;
  const kubeDir = join(root, 'kube');
  mkdirSync(kubeDir);
  [pg, maria, sshd, kubeApi] = await Promise.all([
    startPostgres({ dbCaPem: dbCa, roles: [DB_USER], databases: ['app'] }),
    startMariadb({ clientCaPem: mariaCa }),
    startNodeSshd(d, ['PrintMotd no']),
    startFixtureApiServer({ dir: kubeDir }),
  ]);
  await maria.sql(
    `CREATE DATABASE shop; CREATE USER ${DB_USER}@'%' REQUIRE SUBJECT '/CN=${DB_USER}/O=${CLUSTER}'; GRANT ALL ON shop.* TO ${DB_USER}@'%'`,
  );
  const files = (name: string, text: string) => {
    const f = join(root, name);
    writeFileSync(f, text);
    return f;
  };
  await Promise.all([
    addNode(d, 'node1', sshd.port),
    asAdmin([
      'db',
      'add',
      'orders',
      '--protocol',
      'postgres',
      '--uri',
      `localhost:${pg.port}`,
      '--ca-file',
      files('pg-ca.pem', pg.serverCaPem),
    ]),
    asAdmin([
      'db',
      'add',
      'shop',
      '--protocol',
      'mysql',
      '--uri',
      `localhost:${maria.port}`,
      '--ca-file',
      files('my-ca.pem', maria.serverCaPem),
    ]),
    asAdmin(['kube', 'add', 'prod', '--kubeconfig', files('upstream.kubeconfig', kubeApi.kubeconfig)]),
  ]);
}, 180_000);

afterAll(async () => {
  for (const s of started) await s.stop();
  await d?.stop();
  await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop(), kubeApi?.close()]);
  execFileSync('userdel', ['-r', '-f', unixLogin], { stdio: 'ignore' });
  if (d) rmSync(d.root, { recursive: true, force: true });
  if (root) rmSync(root, { recursive: true, force: true });
  printTimings();
});

function printTimings(): void {
  if (timings.length === 0) return;
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? '-' : `${s[Math.floor((s.length - 1) / 2)]} / ${s.at(-1)} (n=${s.length})`;
  };
  const rows = [['trigger', 'client', 'client showed the end: ms p50 / max', 'end audited: ms p50 / max']];
  for (const t of TRIGGERS) {
    for (const c of CLIENTS) {
      const mine = timings.filter((x) => x.trigger === t.name && x.client === c.name);
      if (mine.length === 0) continue;
      rows.push([
        t.name,
        c.name,
        c.idle ? 'idle (n/a)' : stats(mine.flatMap((x) => (x.clientMs === undefined ? [] : [x.clientMs]))),
        stats(mine.map((x) => x.auditMs)),
      ]);
    }
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(
    `\nsession lifecycle timings (${ROUNDS} round(s)):\n${rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ')).join('\n')}\n`,
  );
  console.log(`LIFECYCLE_TIMINGS_JSON ${JSON.stringify(timings)}`);
}

// ------------------------------------------------------------------ the matrix

const ROUND_CASES = Array.from({ length: ROUNDS }, (_, round) =>
  TRIGGERS.map((t) => ({ round, t, label: ROUNDS > 1 ? `${t.name} (round ${round + 1})` : t.name })),
).flat();

describe('every live session ends on every trigger, with the reason in the client and the audit log', () => {
  it.each(ROUND_CASES)(
    '$label',
    async ({ round, t }) => {
      const u = newUser(`u${round}-${t.name.replace(' ', '')}`);
      const roles = ['access', ...(t.roles?.(round) ?? [])];
      for (const r of t.roles?.(round) ?? []) {
        await asAdmin(
          ['roles', 'create', '-f', '-'],
          `kind: role\nname: ${r}\ndescription: a second role to lock\n`,
        );
      }
      await asAdmin(
        [
          'users',
          'add',
          u.name,
          '--roles',
          roles.join(','),
          '--logins',
          unixLogin,
          '--traits',
          `db_users=${DB_USER}`,
          'db_names=app,shop',
          'kube_groups=developers',
          '--password-stdin',
        ],
        `${PASSWORD}\n`,
      );
      const startedAt = Date.now();
      await login(u, t.ttl?.());

      // Every client at once.
      const running = await Promise.all(CLIENTS.map((c) => c.start(u, u.name)));

      // Listed while they run, each with its protocol.
      const listed = (await listSessions()).filter((s) => s.user === u.name);
      slowestStartMs = Math.max(slowestStartMs, Date.now() - startedAt);
      expect(listed.map((s) => s.protocol).sort()).toEqual(CLIENTS.map((c) => c.protocol).sort());
      const taken = new Set<string>();
      CLIENTS.forEach((c, i) => {
        const mine = listed.filter((s) => s.protocol === c.protocol && !taken.has(s.id));
        const s = c.pick ? c.pick(running[i]!, mine) : mine[0];
        expect(s, `${c.name} in sessions ls`).toBeDefined();
        taken.add(s!.id);
        running[i]!.id = s!.id;
      });

      const fired = await t.fire(u, listed, round);
      const t0 = (id: string) => fired.t0.get(id) ?? fired.t0.get('*')!;
      const reason = t.reason(u, round);

      // Each ends: the busy clients show it by themselves; the idle ones when used next.
      const ends = await Promise.all(
        CLIENTS.map(async (c, i) => {
          const r = running[i]!;
          if (c.idle) return undefined;
          return guard(
            r.ended,
            Math.max(0, t0(r.id!) - Date.now()) + END_GUARD_MS,
            () => `${c.name} did not end after the ${t.name}:\n${r.shown()}`,
          );
        }),
      );
      const types = [...new Set(CLIENTS.map((c) => c.endEvent))];
      const events = await until(
        async () => {
          const evs = await auditEvents(types, u.name);
          return CLIENTS.every((c, i) => endEventOf(c, running[i]!, evs)) ? evs : undefined;
        },
        () => `an end event for each session of ${u.name}`,
      );
      for (const [i, c] of CLIENTS.entries()) {
        const r = running[i]!;
        if (c.idle) {
          r.poke?.();
          await guard(r.ended, END_GUARD_MS, () => `${c.name} did not show the end when used:\n${r.shown()}`);
        }
        if (process.env.GATEHOUSE_LIFECYCLE_SHOW) console.log(`--- ${t.name} / ${c.name}:\n${r.shown()}`);
        c.expectShown(r, reason);
        // What the session was running on the database ends with it.
        await r.statementGone?.();
        const e = endEventOf(c, r, events)!;
        expect((e as { reason?: string }).reason, `${c.name}: ${e.type} reason`).toMatch(new RegExp(reason));
        timings.push({
          trigger: t.name,
          client: c.name,
          clientMs: ends[i] === undefined ? undefined : ends[i]! - t0(r.id!),
          auditMs: Date.parse(e.time) - t0(r.id!),
        });
      }
      // And no longer listed.
      expect((await listSessions()).filter((s) => s.user === u.name)).toEqual([]);
      await Promise.all(running.map((r) => r.stop()));
    },
    180_000,
  );
});

/** The end event of one session, by the id `sessions ls` listed it under. */
function endEventOf(c: ClientCase, r: Running, events: AuditEvent[]): AuditEvent | undefined {
  return events.find((e) => e.type === c.endEvent && (e as { session_id?: string }).session_id === r.id);
}

// ------------------------------------------------------------------ bad input

/**
 * A TCP relay in front of an upstream that can hold what the gateway sends
 * it: a session is kept in its handshake (authorized, upstream not ready)
 * until released.
 */
class Gate {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #holding = false;
  #queue: (() => void)[] = [];
  #onHeld: (() => void) | undefined;
  port = 0;

  constructor(target: number) {
    this.#server = net.createServer((c) => {
      const up = net.connect(target, '127.0.0.1');
      for (const s of [c, up]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => undefined);
      }
      c.on('data', (b: Buffer) => this.#pass(() => up.write(b)));
      c.on('end', () => this.#pass(() => up.end()));
      c.on('close', () => this.#pass(() => up.destroy()));
      up.pipe(c);
      up.on('close', () => c.destroy());
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }

  /** From now on nothing reaches the upstream; resolves once the gateway tried to send something. */
  hold(): Promise<void> {
    this.#holding = true;
    return new Promise((resolve) => {
      this.#onHeld = resolve;
    });
  }

  release(): void {
    this.#holding = false;
    for (const f of this.#queue.splice(0)) f();
  }

  #pass(f: () => void): void {
    if (!this.#holding) return f();
    this.#queue.push(f);
    this.#onHeld?.();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

async function newAccessUser(name: string): Promise<User> {
  const u = newUser(name);
  await asAdmin(
    [
      'users',
      'add',
      u.name,
      '--roles',
      'access',
      '--logins',
      unixLogin,
      '--traits',
      `db_users=${DB_USER}`,
      'db_names=app,shop',
      'kube_groups=developers',
      '--password-stdin',
    ],
    `${PASSWORD}\n`,
  );
  return u;
}

describe('bad input', () => {
  it('a lock issued while sessions are still in their handshake: none of them starts, each client says why', async () => {
    const gates = {
      ssh: await new Gate(sshd.port).listen(),
      pg: await new Gate(pg.port).listen(),
      maria: await new Gate(maria.port).listen(),
    };
    started.push({
      stop: () => Promise.all(Object.values(gates).map((g) => g.close())).then(() => undefined),
    });
    const caFile = (name: string, pem: string) => {
      const f = join(root, name);
      writeFileSync(f, pem);
      return f;
    };
    await Promise.all([
      addNode(d, 'gated', gates.ssh.port),
      asAdmin([
        'db',
        'add',
        'ordersgated',
        '--protocol',
        'postgres',
        '--uri',
        `localhost:${gates.pg.port}`,
        '--ca-file',
        caFile('pg-ca.pem', pg.serverCaPem),
      ]),
      asAdmin([
        'db',
        'add',
        'shopgated',
        '--protocol',
        'mysql',
        '--uri',
        `localhost:${gates.maria.port}`,
        '--ca-file',
        caFile('my-ca.pem', maria.serverCaPem),
      ]),
    ]);
    const u = await newAccessUser('handshake');
    await as(
      u,
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', u.name, '--password-stdin'],
      `${PASSWORD}\n`,
    );
    await Promise.all([
      as(u, ['db', 'login', 'ordersgated', '--db-user', DB_USER, '--db-name', 'app']),
      as(u, ['db', 'login', 'shopgated', '--db-user', DB_USER, '--db-name', 'shop']),
      as(u, ['kube', 'login', 'prod', '--kubeconfig', u.kubeconfig]),
      as(u, ['config', 'ssh']).then((r) => writeFileSync(u.sshConfig, r.stdout)),
    ]);
    // kubectl prints a Status message only with its discovery cache warm (cold, a 403 during
    // discovery reads "Forbidden: unknown"): the user has run kubectl before, as people do.
    const warm = new Proc('/usr/bin/kubectl', kubectlArgs(u, ['get', 'pods', '-o', 'name']), {
      HOME: u.home,
    });
    await warm.exited;
    expect(warm.out.text, warm.describe()).toContain('pod/web-1');
    // The database and SSH upstreams take nothing from the gateway, and the API server holds
    // the exec upgrade (kubectl's GETs before it go through).
    const upgrades = kubeApi.holdUpgrades();
    const held = [...Object.values(gates).map((g) => g.hold()), upgrades.reached];
    const clients = {
      ssh: new Proc(
        'ssh',
        ['-F', u.sshConfig, '-o', 'BatchMode=yes', `${unixLogin}@gated.${CLUSTER}`, 'echo started'],
        u.env,
      ),
      psql: new Proc(
        'psql',
        ['-X', '-At', '-v', 'VERBOSITY=verbose', 'service=ordersgated', '-c', "select 'start' || 'ed'"],
        u.env,
      ),
      mariadb: new Proc(
        'mariadb',
        ['--defaults-group-suffix=_shopgated', '-N', '-B', '-e', "SELECT CONCAT('start', 'ed')"],
        u.env,
      ),
      kubectl: new Proc('/usr/bin/kubectl', kubectlArgs(u, ['exec', 'web-1', '--', 'echo', 'started']), {
        HOME: u.home,
      }),
    };
    // Every session authorized and waiting for its upstream.
    await guard(Promise.all(held), 30_000, () =>
      Object.entries(clients)
        .map(([k, p]) => `${k}: ${p.describe()}`)
        .join('\n'),
    );
    await trigger(['users', 'lock', u.name, '--message', 'mid-handshake']);
    for (const g of Object.values(gates)) g.release();
    upgrades.release();
    for (const [name, p] of Object.entries(clients)) {
      await guard(p.exited, END_GUARD_MS, () => `${name} did not end:\n${p.describe()}`);
      if (process.env.GATEHOUSE_LIFECYCLE_SHOW) console.log(`--- handshake / ${name}:\n${p.describe()}`);
      expect.soft(p.out.text, `${name} started:\n${p.describe()}`).not.toContain('started');
      expect.soft(p.code, name).not.toBe(0);
      expect.soft(p.all.text, name).toContain(`access locked (user ${u.name}): mid-handshake`);
    }
    expect((await listSessions()).filter((s) => s.user === u.name)).toEqual([]);
  }, 120_000);

  it('a new channel on an OpenSSH ControlMaster connection after access ended is refused with the reason', async () => {
    const u = await newAccessUser('control');
    await as(
      u,
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', u.name, '--password-stdin'],
      `${PASSWORD}\n`,
    );
    writeFileSync(u.sshConfig, (await as(u, ['config', 'ssh'])).stdout);
    const control = join(u.home, 'cm.sock');
    const ssh = (args: string[]) =>
      new Proc(
        'ssh',
        ['-F', u.sshConfig, '-o', 'BatchMode=yes', '-o', `ControlPath=${control}`, ...args],
        u.env,
      );
    const master = ssh([
      '-o',
      'ControlMaster=yes',
      `${unixLogin}@node1.${CLUSTER}`,
      'echo master-ready; exec sleep 120',
    ]);
    await guard(master.out.when(/master-ready/), 30_000, () => master.describe());
    // A second command rides the master's connection: one session.
    const muxed = ssh(['-o', 'ControlMaster=no', `${unixLogin}@node1.${CLUSTER}`, 'echo muxed']);
    await muxed.exited;
    expect(muxed.out.text, muxed.describe()).toBe('muxed\n');
    expect((await listSessions()).filter((s) => s.user === u.name)).toHaveLength(1);

    await trigger(['users', 'lock', u.name, '--message', 'no more channels']);
    await guard(master.err.when(/no more channels/), END_GUARD_MS, () => master.describe());
    const after = ssh(['-o', 'ControlMaster=no', `${unixLogin}@node1.${CLUSTER}`, 'echo after']);
    await guard(after.exited, END_GUARD_MS, () => after.describe());
    if (process.env.GATEHOUSE_LIFECYCLE_SHOW)
      console.log(`--- control master:\n${master.describe()}\n--- ssh -S:\n${after.describe()}`);
    expect(after.out.text).not.toContain('after');
    expect(after.code).toBe(255);
    expect(after.err.text).toContain(`access locked (user ${u.name}): no more channels`);
    await guard(master.exited, END_GUARD_MS, () => master.describe());
  }, 120_000);

  it('sessions kill: an unknown id and an ended one are a clear error; of two kills at once one wins', async () => {
    const unknown = await run(['sessions', 'kill', 'no-such-session'], {
      env: { GATEHOUSE_HOME: adminHome() },
    });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no live session "no-such-session" on any gateway');
    expect(unknown.stderr).toContain('gatehouse sessions ls');

    const u = await newAccessUser('twokills');
    await as(
      u,
      ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', u.name, '--password-stdin'],
      `${PASSWORD}\n`,
    );
    writeFileSync(u.sshConfig, (await as(u, ['config', 'ssh'])).stdout);
    const p = new Proc(
      'ssh',
      ['-F', u.sshConfig, '-o', 'BatchMode=yes', `${unixLogin}@node1.${CLUSTER}`, 'echo up; exec sleep 120'],
      u.env,
    );
    await guard(p.out.when(/up/), 30_000, () => p.describe());
    const [s] = (await listSessions()).filter((x) => x.user === u.name);
    expect(s).toBeDefined();
    const kill = () => run(['sessions', 'kill', s!.id], { env: { GATEHOUSE_HOME: adminHome() } });
    const both = await Promise.all([kill(), kill()]);
    expect(both.map((r) => r.code).sort()).toEqual([0, 1]);
    const won = both.find((r) => r.code === 0)!;
    const lost = both.find((r) => r.code === 1)!;
    expect(won.stdout).toBe(`Session ${s!.id} ended.\n`);
    expect(lost.stderr).toContain(`no live session "${s!.id}" on any gateway`);
    await guard(p.exited, END_GUARD_MS, () => p.describe());
    expect(p.err.text).toContain('Gatehouse: ended by admin');
    // Once ended, the id is as unknown as any other.
    const again = await kill();
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`no live session "${s!.id}" on any gateway`);
    const ends = (await auditEvents(['session.end'], u.name)).filter(
      (e) => (e as { session_id?: string }).session_id === s!.id,
    );
    expect(ends).toHaveLength(1);
    expect((ends[0] as { reason?: string }).reason).toBe('ended by admin');
  }, 120_000);
});
