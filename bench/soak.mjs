// Soak: N concurrent sessions through the real daemon (`gatehouse start
// --config`, in its own process), opened and closed continuously for M
// minutes by real clients: OpenSSH `ssh` (a command, and a shell on a pty)
// to an OpenSSH sshd, `psql` to PostgreSQL, the `mariadb` client to MariaDB
// and `kubectl exec` to the Kubernetes fixture API server. The daemon's RSS,
// heap, open fds, active handles and event-loop lag are sampled over time.
// Goals: flat memory (<= 10% growth after warm-up) and 0 failed sessions.
//
// RSS, fds and CPU come from /proc; heap, handles and event-loop lag from
// bench/soak-probe.cjs, which this bench preloads into the daemon (node
// --require) and asks over IPC. packages/cli/test/reliability/soak.test.ts
// runs this same code for 2 minutes in CI.
import { execFile, spawn } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fixtureModuleUrl } from './kube.mjs';
import { addLoginAccount, ensurePackages, freePort, median, processCpuMs } from './lib.mjs';
import { startMariadb } from './mysql.mjs';
import { startPostgres } from './postgres.mjs';

export const description =
  'soak: N mixed ssh/psql/mariadb/kubectl exec sessions opened and closed for M minutes; daemon RSS, heap, fds, lag';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, '../packages/cli/bin/gatehouse.js');
const PROBE = path.join(here, 'soak-probe.cjs');
const FIXTURE = path.join(here, 'soak-fixture.cjs');
const exec = promisify(execFile);
const PASSWORD = 'soak bench password 123';
export const KINDS = ['ssh', 'psql', 'mysql', 'kube'];
/** A session that has not ended this long after its planned end has failed. */
const GRACE_MS = 60_000;
/** The daemon's fds after the load may exceed the idle baseline by this much (pooled upstream connections). */
export const FD_SLACK = 10;
const GOAL_GROWTH = 0.1;
/** The nice value of everything but the daemon (see soak()). */
const CLIENT_NICE = 10;
/** The nice value of the daemon's autogroup (see setup()): weight 9548 against 1024. */
const DAEMON_AUTOGROUP_NICE = -10;
const MiB = 1024 * 1024;

export const USAGE = `usage: npm run bench -- soak [options]

Keeps N sessions open through a real \`gatehouse start\` daemon, each opened by a
real client, held for a random lifetime and closed, for M minutes:
  ssh    OpenSSH ssh -J through the gateway to an OpenSSH sshd: half run a
         command (echo, sleep, echo), half a shell on a pty fed with commands
  psql   psql "service=..." from \`gatehouse db login\`, a few statements
  mysql  the mariadb client with the ~/.my.cnf group \`db login\` writes
  kube   kubectl exec -i into a pod of the fixture API server, a few commands
A session fails when its client exits non-zero, its output lacks a value the
far side computed, or it runs 60 s past its lifetime; each failure is printed.
The daemon (its own process and session; where the kernel groups CPU by
session, its group weighs as much as ten) is sampled every interval: RSS, heap
used, external + array buffers, open fds, active handles, event-loop lag
p50/p99/max, CPU, "wait %" (the share of the time its event loop was ready but
had no CPU: lag from the machine, not from the daemon), sessions opened/closed
per second, and "kube lag" (the fixture API server's worst lag). Warm-up is
the first --warmup percent of the run; memory growth compares the median of the
samples in the tenth of the run after warm-up with the median of the last. The
heap is also collected (forced GC) idle before the load, after warm-up, at the
end of the load and after the drain. Clients, databases, sshd and the fixture
run at nice 10 (the fixture in its own process and session): here they stand
in for other machines.
Goals: memory growth <= 10% (RSS and heap) and 0 failed sessions.
Needs root, PostgreSQL 15, MariaDB, OpenSSH client + server, kubectl, and a
build (npm run bench runs tsc -b).

options:
  --minutes M         how long the load runs (default 30)
  --sessions N        concurrent sessions (default 1000)
  --mix K=W,...       relative weights of ssh, psql, mysql, kube
                      (default ssh=1,psql=1,mysql=1,kube=1; 0 leaves one out)
  --lifetime A-B      session lifetime in seconds, uniform (default 0.5-10)
  --interval S        seconds between samples (default: minutes, 5..30)
  --warmup P          warm-up, percent of the run (default 20)
  --seed S            seed for lifetimes and the mix (default: random; printed)
  --json              print the raw series and summary as JSON on stdout
  -h, --help          this text`;

export function defaultOptions() {
  return {
    minutes: 30,
    sessions: 1000,
    mix: { ssh: 1, psql: 1, mysql: 1, kube: 1 },
    lifetime: [0.5, 10],
    interval: undefined,
    warmup: 20,
    seed: undefined,
    json: false,
  };
}

export function parseArgs(argv) {
  const o = defaultOptions();
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const value = () => {
      if (v !== undefined) return v;
      const next = argv[++i];
      if (next === undefined) throw new Error(`${a} needs a value (see --help)`);
      return next;
    };
    if (a === '-h' || a === '--help') o.help = true;
    else if (a === '--json') o.json = true;
    else if (a === '--minutes') o.minutes = Number(value());
    else if (a === '--sessions') o.sessions = Number(value());
    else if (a === '--interval') o.interval = Number(value());
    else if (a === '--warmup') o.warmup = Number(value());
    else if (a === '--seed') o.seed = Number(value());
    else if (a === '--mix') o.mix = parseMix(value());
    else if (a === '--lifetime') {
      const m = /^([\d.]+)-([\d.]+)$/.exec(value());
      if (!m) throw new Error('--lifetime takes MIN-MAX seconds, e.g. 0.5-10');
      o.lifetime = [Number(m[1]), Number(m[2])];
    } else throw new Error(`unknown option ${a} (see --help)`);
  }
  return checkOptions(o);
}

function parseMix(text) {
  const mix = { ssh: 0, psql: 0, mysql: 0, kube: 0 };
  for (const part of text.split(',')) {
    const [k, w] = part.split('=');
    if (!KINDS.includes(k) || !(Number(w) >= 0))
      throw new Error(`--mix: "${part}" is not KIND=WEIGHT with KIND one of ${KINDS.join(', ')}`);
    mix[k] = Number(w);
  }
  return mix;
}

/** Fills defaults and rejects nonsense; returns the options the run uses. */
export function checkOptions(given) {
  const o = { ...defaultOptions(), ...given };
  if (!(o.minutes > 0)) throw new Error('--minutes must be a positive number');
  if (!(Number.isInteger(o.sessions) && o.sessions > 0))
    throw new Error('--sessions must be a positive integer');
  if (!KINDS.some((k) => o.mix[k] > 0))
    throw new Error('--mix needs at least one kind with a weight above 0');
  const [lo, hi] = o.lifetime;
  if (!(lo > 0 && hi >= lo)) throw new Error('--lifetime MIN-MAX needs 0 < MIN <= MAX');
  if (!(o.warmup >= 0 && o.warmup < 90)) throw new Error('--warmup must be a percentage below 90');
  o.interval ??= Math.min(30, Math.max(5, Math.round(o.minutes)));
  if (!(o.interval > 0)) throw new Error('--interval must be a positive number of seconds');
  o.seed ??= Math.floor(Math.random() * 2 ** 31);
  return o;
}

/** mulberry32: a small seeded generator, so a run's lifetimes and mix can be replayed. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The environment for gatehouse commands: this one, minus a data dir that would switch to local mode. */
function cliEnv(extra) {
  const env = { ...process.env, ...extra };
  delete env.GATEHOUSE_DATA_DIR;
  return env;
}

/** Runs `gatehouse ARGS` to completion; resolves to stdout, rejects with stderr on a non-zero exit. */
function gatehouse(args, { env = {}, input = '' } = {}) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { env: cliEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.stderr.on('data', (d) => {
      err += d;
    });
    c.on('error', reject);
    c.on('close', (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`gatehouse ${args.join(' ')} exited with ${code}: ${err.trim()}`)),
    );
    c.stdin.end(input);
  });
}

/**
 * RSS, open fds and CPU time of process `pid`, and how long its main thread
 * (the event loop) has waited for a CPU while ready to run, read from /proc.
 */
function procStats(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  // schedstat: time on a CPU, time waiting on a run queue (ns), time slices.
  const sched = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ');
  return {
    rss: kb('VmRSS') * 1024,
    threads: kb('Threads'),
    fds: readdirSync(`/proc/${pid}/fd`).length,
    cpuMs: processCpuMs(pid),
    runqWaitMs: Number(sched[1]) / 1e6,
  };
}

/**
 * The real daemon, `gatehouse start --config FILE`, with the V8 flag its
 * bin/ line sets and the probe preloaded; resolves once it prints its
 * addresses and CA pin.
 */
async function startDaemon(dir, configFile) {
  const child = spawn(
    process.execPath,
    ['--initial-old-space-size=64', '--require', PROBE, BIN, 'start', '--config', configFile],
    {
      env: cliEnv({ GATEHOUSE_HOME: path.join(dir, 'home-daemon') }),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Its own session, so its own scheduling group where the kernel groups by session
      // (autogroup): otherwise a thousand clients in this session outweigh it for CPU whatever
      // their nice value. soak() stops it, also on Ctrl-C.
      detached: true,
    },
  );
  let out = '';
  // The daemon's stderr is where it reports errors: kept (the first lines) and counted.
  const errLines = [];
  const lastLines = [];
  let errCount = 0;
  let partial = '';
  child.stderr.on('data', (d) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop();
    errCount += lines.length;
    for (const l of lines) {
      if (errLines.length < 100) errLines.push(l);
      else {
        lastLines.push(l);
        if (lastLines.length > 100) lastLines.shift();
      }
    }
  });
  let exit;
  child.on('exit', (code, signal) => {
    exit = { code, signal };
  });
  // A send to a daemon that has gone fails here, and the probe says why.
  child.on('error', () => undefined);
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`gatehouse start printed no CA pin in 60 s:\n${out}`)),
      60_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse start exited with ${code}:\n${out}\n${errLines.join('\n')}`));
    });
    const onData = (d) => {
      out += d;
      const pin = /CA pin:\s+--ca-pin (sha256:[0-9a-f]{64})/.exec(out);
      const proxy = /proxy:\s+(\S+)/.exec(out);
      const mysql = /mysql:\s+(\S+)/.exec(out);
      if (pin && proxy && mysql) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stdout.off('data', onData);
        child.stdout.resume();
        resolve({ pin: pin[1], proxy: proxy[1], mysql: mysql[1] });
      }
    };
    child.stdout.on('data', onData);
  });
  let nextId = 0;
  const waiting = new Map();
  child.on('message', (m) => {
    if (m?.soak !== 'sample') return;
    waiting.get(m.id)?.(m);
    waiting.delete(m.id);
  });
  return {
    ...ready,
    pid: child.pid,
    alive: () => child.exitCode === null && child.signalCode === null,
    /** What the daemon wrote to stderr so far: the first 100 lines and the last 100 (copies). */
    stderr: () => ({
      count: errCount + (partial ? 1 : 0),
      first: [...errLines],
      last: partial ? [...lastLines, partial] : [...lastLines],
    }),
    /** How it ended, once it has. */
    exit: () => exit,
    /** Heap, handles and event-loop lag since the previous probe, from inside the daemon; `gc` collects first. */
    probe(gc = false) {
      const id = ++nextId;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error('the daemon did not answer a sample request within 60 s'));
        }, 60_000);
        waiting.set(id, (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        child.send({ soak: 'sample', id, gc }, (err) => {
          if (!err) return;
          clearTimeout(timer);
          waiting.delete(id);
          reject(new Error(`the daemon is gone (${err.message})`));
        });
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(kill);
      return code;
    },
  };
}

/**
 * The Kubernetes fixture API server, in its own process and session
 * (bench/soak-fixture.cjs says why). `lag()` is its event-loop delay since
 * the last call: when it is late, kube sessions are, whatever the daemon does.
 */
async function startFixture(dir) {
  const child = spawn(process.execPath, [FIXTURE, await fixtureModuleUrl(), dir], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    detached: true,
  });
  let err = '';
  child.stderr.on('data', (d) => {
    if (err.length < 8192) err += d;
  });
  child.on('error', () => undefined);
  const next = (what) =>
    new Promise((resolve, reject) => {
      const onExit = (code) => reject(new Error(`the kube fixture exited with ${code} ${what}: ${err}`));
      child.once('exit', onExit);
      child.once('message', (m) => {
        child.off('exit', onExit);
        resolve(m);
      });
    });
  const { kubeconfig } = await next('while starting');
  return {
    kubeconfig,
    async lag() {
      const answer = next('during the soak');
      child.send('lag');
      return (await answer).lag;
    },
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.send('close');
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(kill);
    },
  };
}

/** Connections a database needs for its share of N sessions, with room for stragglers. */
function dbConnections(o, kind) {
  const total = KINDS.reduce((s, k) => s + o.mix[k], 0);
  return Math.ceil((o.sessions * o.mix[kind]) / total) * 2 + 20;
}

/**
 * Everything the sessions need: the kube fixture, the daemon, PostgreSQL,
 * MariaDB and sshd registered with it, a Unix login, and a user `soak`
 * logged in with the CLI (login, db login, kube login) as an engineer would.
 * The admin side goes through the admin API on the daemon's data dir, as
 * `gatehouse --config FILE users add|db add|nodes add|ca export` do, in one
 * process instead of eight.
 */
async function setup(dir, o, cleanups, log, daemonPriority) {
  ensurePackages([
    ['/usr/lib/postgresql/15/bin/postgres', 'postgresql'],
    ['/usr/bin/psql', 'postgresql-client'],
    ['/usr/sbin/mariadbd', 'mariadb-server'],
    ['/usr/bin/mariadb', 'mariadb-client'],
    ['/usr/sbin/sshd', 'openssh-server'],
    ['/usr/bin/ssh', 'openssh-client'],
  ]);
  if (!existsSync('/usr/bin/kubectl'))
    throw new Error('kubectl is missing: install kubectl 1.32 at /usr/bin/kubectl');
  if (!existsSync(path.join(BIN, '../../dist/main.js')))
    throw new Error('packages/cli/dist is missing: build first (npx tsc -b; npm run bench does)');
  const mk = (name) => {
    const d = path.join(dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const step = (what) => log(`${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  const t0 = performance.now();

  step('starting the Kubernetes fixture API server');
  const fixture = await startFixture(mk('kube'));
  cleanups.push(() => fixture.close());
  const upstreamKubeconfig = path.join(dir, 'kube', 'upstream.kubeconfig');
  writeFileSync(upstreamKubeconfig, fixture.kubeconfig);

  const configFile = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    configFile,
    [
      'cluster_name: soak',
      `data_dir: ${path.join(dir, 'data')}`,
      'listen: 127.0.0.1:0',
      // A fixed port: with :0 the API's ping reports port 0 and `db login` cannot write ~/.my.cnf.
      `mysql_listen: 127.0.0.1:${await freePort()}`,
      'auth:',
      '  second_factor: "off"',
      'kube_clusters:',
      '  - name: prod',
      `    kubeconfig: ${upstreamKubeconfig}`,
      '    labels: { env: soak }',
      '',
    ].join('\n'),
  );
  step('starting the daemon (gatehouse start --config)');
  const gw = await startDaemon(dir, configFile);
  cleanups.push(() => gw.stop());
  // The daemon gets the priority this process had (every thread it has so far; later ones inherit).
  for (const tid of readdirSync(`/proc/${gw.pid}/task`)) os.setPriority(Number(tid), daemonPriority);
  // Where the kernel shares CPU between sessions (autogroup), every ssh login on the node is a
  // session of its own: the daemon's weighs as much as ten, so that it runs when it is ready, as on
  // a machine of its own. It takes no more than the daemon uses (a quarter of a core at 200 sessions).
  const autogroup = `/proc/${gw.pid}/autogroup`;
  if (existsSync(autogroup)) writeFileSync(autogroup, String(DAEMON_AUTOGROUP_NICE));

  const { createGateway, loadConfig } = await import('@gatehouse/core');
  const local = await createGateway({
    config: await loadConfig({ file: configFile, env: {} }),
    env: {},
    auditIndexThread: false,
  });
  let peers;
  try {
    step('starting PostgreSQL, MariaDB and sshd');
    const dbCa = local.exportCa('postgres');
    const sshDir = mk('sshd');
    const hostKey = path.join(sshDir, 'ssh_host_ed25519_key');
    const { startSshd } = await import('@gatehouse/core/testing');
    const started = await Promise.allSettled([
      addLoginAccount('ghsoak'),
      startPostgres(mk('pg'), dbCa, { maxConnections: dbConnections(o, 'psql') }),
      startMariadb(mk('maria'), local.exportCa('mariadb'), { maxConnections: dbConnections(o, 'mysql') }),
      (async () => {
        await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
        const cert = await local.authorities.issueSshHostCert({
          publicKey: readFileSync(`${hostKey}.pub`, 'utf8').trim(),
          keyId: 'node1',
          principals: ['node1', '127.0.0.1'],
          validAfter: new Date(Date.now() - 60_000),
          validBefore: new Date(Date.now() + 24 * 3600e3),
        });
        writeFileSync(`${hostKey}-cert.pub`, `${cert.cert}\n`);
        return startSshd({
          dir: sshDir,
          userCaKeys: local.exportCa('sshd'),
          hostKey,
          hostCert: `${hostKey}-cert.pub`,
          // sshd drops connections beyond MaxStartups unauthenticated ones (default 10:30:100).
          extraConfig: ['PrintMotd no', 'PrintLastLog no', `MaxStartups ${o.sessions * 2}`],
        });
      })(),
    ]);
    // Whatever started is stopped at the end, also when another one failed to start.
    const stops = [(x) => x.remove(), (x) => x.stop(), (x) => x.stop(), (x) => x.stop()];
    started.forEach((r, i) => {
      if (r.status === 'fulfilled') cleanups.push(() => stops[i](r.value));
    });
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const [account, pg, maria, sshd] = started.map((r) => r.value);
    peers = { account };
    step('registering them and user soak');
    await pg.psql('CREATE ROLE soak LOGIN');
    await pg.psql('CREATE DATABASE soak OWNER soak');
    // The subject the db CA gives user soak in cluster soak, as MariaDB compares it.
    await maria.sql(
      "CREATE DATABASE soak; CREATE USER soak@'%' REQUIRE SUBJECT '/CN=soak/O=soak'; GRANT ALL ON soak.* TO soak@'%'",
    );
    await local.admin.createUser({
      name: 'soak',
      roles: ['access'],
      traits: {
        logins: [account.login],
        db_users: ['soak'],
        db_names: ['soak'],
        kube_groups: ['developers'],
      },
      password: PASSWORD,
    });
    await local.admin.addDatabase({
      name: 'pg',
      protocol: 'postgres',
      uri: `localhost:${pg.port}`,
      ca_pem: readFileSync(path.join(pg.tls, 'ca.crt'), 'utf8'),
      labels: { engine: 'postgres' },
    });
    await local.admin.addDatabase({
      name: 'maria',
      protocol: 'mysql',
      uri: `localhost:${maria.port}`,
      ca_pem: readFileSync(maria.caFile, 'utf8'),
      labels: { engine: 'mariadb' },
    });
    await local.admin.addNode({ name: 'node1', addr: `127.0.0.1:${sshd.port}`, labels: { env: 'soak' } });
  } finally {
    await local.close();
  }

  step('logging in as soak (gatehouse login, db login, kube login)');
  const home = mk('client');
  const clientEnv = { GATEHOUSE_HOME: path.join(home, '.gatehouse'), HOME: home };
  await gatehouse(['login', '--proxy', gw.proxy, '--ca-pin', gw.pin, '--user', 'soak', '--password-stdin'], {
    env: clientEnv,
    input: `${PASSWORD}\n`,
  });
  const kubeconfig = path.join(home, 'kubeconfig');
  // Each writes its own files (~/.pg_service.conf, ~/.my.cnf, the kubeconfig).
  await Promise.all([
    gatehouse(['db', 'login', 'pg'], { env: clientEnv }),
    gatehouse(['db', 'login', 'maria'], { env: clientEnv }),
    gatehouse(['kube', 'login', 'prod', '--static', '--kubeconfig', kubeconfig], { env: clientEnv }),
  ]);
  const keyDir = path.join(clientEnv.GATEHOUSE_HOME, 'keys', gw.proxy.replace(':', '_'), 'soak');
  const sshConfig = path.join(home, 'ssh_config');
  writeFileSync(
    sshConfig,
    [
      'Host *',
      `  IdentityFile ${path.join(keyDir, 'id_ed25519')}`,
      `  CertificateFile ${path.join(keyDir, 'id_ed25519-cert.pub')}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${path.join(clientEnv.GATEHOUSE_HOME, 'known_hosts')}`,
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );
  step('ready');
  return {
    gw,
    fixture,
    /** The daemon's API as user soak (mutual TLS with the login certificate), as the CLI uses it. */
    api: async () => {
      const { GatehouseClient } = await import('@gatehouse/core');
      const read = (f) => readFileSync(path.join(keyDir, f), 'utf8');
      return new GatehouseClient({
        proxy: gw.proxy,
        caPem: read('cas.pem').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g),
        certPem: read('tls.crt'),
        keyPem: read('tls.key'),
      });
    },
    login: peers.account.login,
    clients: {
      // Only what the clients need: ~/.pg_service.conf and ~/.my.cnf are in HOME.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8' },
      ssh: ['-F', sshConfig, '-J', `soak@${gw.proxy}`, `${peers.account.login}@node1`],
      kubectl: ['--kubeconfig', kubeconfig, '--cache-dir', mk('client/kube-cache')],
    },
  };
}

/**
 * What one session of `kind` runs: the client, the lines it is fed over its
 * lifetime (a few, about one every 2 s), and what its output must contain.
 * Every expected value is computed on the far side (the shell, the database),
 * so only a session that really ran can pass.
 */
function sessionSpec(kind, clients, lifetimeS, rnd) {
  const steps = Math.max(1, Math.round(lifetimeS / 2));
  const pairs = Array.from({ length: steps }, () => [
    100 + Math.floor(rnd() * 900),
    100 + Math.floor(rnd() * 900),
  ]);
  const expect = pairs.map(([a, b]) => `m${a * b}`);
  const shellLines = pairs.map(([a, b]) => `echo m$((${a}*${b}))\n`);
  const run = { env: clients.env, nice: clients.nice };
  switch (kind) {
    case 'ssh-exec': {
      const [a, b] = pairs[0];
      return {
        ...run,
        cmd: 'ssh',
        args: [...clients.ssh, `echo m$((${a}*${b})); sleep ${lifetimeS.toFixed(2)}; echo e$((${a}+${b}))`],
        expect: [`m${a * b}`, `e${a + b}`],
      };
    }
    case 'ssh-pty':
      return { ...run, cmd: 'ssh', args: ['-tt', ...clients.ssh], lines: shellLines, end: 'exit\n', expect };
    case 'psql':
      return {
        ...run,
        cmd: 'psql',
        args: ['-X', '-At', '-v', 'ON_ERROR_STOP=1', 'service=pg'],
        lines: pairs.map(([a, b]) => `select 'm' || ${a} * ${b};\n`),
        expect,
      };
    case 'mysql':
      return {
        ...run,
        cmd: 'mariadb',
        args: ['--defaults-group-suffix=_maria', '-N', '-B'],
        lines: pairs.map(([a, b]) => `select concat('m', ${a} * ${b});\n`),
        expect,
      };
    case 'kube':
      return {
        ...run,
        cmd: 'kubectl',
        args: [...clients.kubectl, 'exec', '-i', 'web-1', '--', 'sh'],
        lines: shellLines,
        expect,
      };
    default:
      throw new Error(`no session kind ${kind}`);
  }
}

const tail = (s, n = 300) => {
  const t = s.trim().replace(/\s+/g, ' ');
  return t.length > n ? `...${t.slice(-n)}` : t || '(nothing)';
};

/**
 * Runs one session: spawns the client, feeds its lines spread over the
 * lifetime, ends its input at the planned end, and checks it exited 0 with
 * every expected value in its output. Resolves to { error?, ms, aborted? }.
 */
function runSession(spec, lifetimeMs, signal) {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn('nice', [...spec.nice, spec.cmd, ...spec.args], {
      env: spec.env,
      stdio: [spec.lines ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      if (out.length < 65_536) out += d;
    });
    child.stderr.on('data', (d) => {
      if (err.length < 8192) err += d;
    });
    const timers = [];
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      signal.removeEventListener('abort', onAbort);
      resolve({ ...r, ms: performance.now() - started });
    };
    const onAbort = () => {
      child.kill('SIGKILL');
      finish({ aborted: true });
    };
    signal.addEventListener('abort', onAbort);
    // When each line went in (s after the spawn), for the failure message.
    const fed = [];
    const at = () => ((performance.now() - started) / 1000).toFixed(1);
    if (spec.lines) {
      // A client that exits early makes these writes fail (EPIPE); the failure is told by its exit
      // code and output, checked below, and the message says so.
      child.stdin.on('error', (e) => fed.push(`stdin ${e.code ?? e.message} at ${at()}`));
      // One step at a time, each timed from the spawn: timers of different lengths do not fire in
      // order when this event loop runs late (the end of input came before the first line).
      const steps = [
        ...spec.lines.map((line, i) => ({ at: (i * lifetimeMs) / spec.lines.length, line })),
        { at: lifetimeMs },
      ];
      const next = (k) => {
        const step = steps[k];
        if (!step || done) return;
        const run = () => {
          if (done) return;
          if (step.line === undefined) {
            fed.push(`end at ${at()}`);
            if (spec.end) child.stdin.write(spec.end);
            child.stdin.end();
            return;
          }
          fed.push(`line ${k + 1} at ${at()}`);
          child.stdin.write(step.line);
          next(k + 1);
        };
        const wait = step.at - (performance.now() - started);
        if (wait <= 0) run();
        else timers.push(setTimeout(run, wait));
      };
      next(0);
    }
    const input = () => (fed.length ? `; input: ${fed.join(', ')}` : '');
    timers.push(
      setTimeout(() => {
        child.kill('SIGKILL');
        finish({
          error: `still running ${GRACE_MS / 1000} s after its planned end; stdout: ${tail(out)}; stderr: ${tail(err)}${input()}`,
        });
      }, lifetimeMs + GRACE_MS),
    );
    child.on('error', (e) => finish({ error: `cannot run ${spec.cmd}: ${e.message}` }));
    child.on('close', (code, sig) => {
      if (code !== 0)
        return finish({ error: `exited with ${code ?? sig} at ${at()}; stderr: ${tail(err)}${input()}` });
      const missing = spec.expect.filter((x) => !out.includes(x));
      if (missing.length > 0)
        return finish({
          error: `output lacks ${missing.join(', ')} (expected ${spec.expect.join(', ')}); exited 0 at ${at()}; stdout: ${tail(out)}; stderr: ${tail(err)}${input()}`,
        });
      finish({});
    });
  });
}

/** One sample of the daemon: /proc from outside, the probe from inside. */
async function sampleDaemon(gw, gc = false) {
  const inside = await gw.probe(gc);
  const proc = procStats(gw.pid);
  const handles = Object.values(inside.resources).reduce((s, n) => s + n, 0);
  return {
    rss: proc.rss,
    fds: proc.fds,
    threads: proc.threads,
    cpuMs: proc.cpuMs,
    runqWaitMs: proc.runqWaitMs,
    heapUsed: inside.memory.heapUsed,
    heapTotal: inside.memory.heapTotal,
    external: inside.memory.external,
    arrayBuffers: inside.memory.arrayBuffers,
    handles,
    resources: inside.resources,
    lag: inside.lag,
  };
}

function pct(sorted, p) {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Runs the soak and returns its figures: the sampled series, checkpoints
 * (idle before the load, after warm-up, end of the load, after the drain),
 * the failures and the summary with the goals. `hooks.log` gets progress
 * text, `hooks.row` each sample as it is taken, `hooks.failure` each failed
 * session; `hooks.signal` stops the run early (Ctrl-C).
 */
export async function soak(given, hooks = {}) {
  const o = checkOptions(given);
  const log = hooks.log ?? (() => undefined);
  const stop = new AbortController();
  // Every session in flight listens for the stop.
  setMaxListeners(o.sessions + 10, stop.signal);
  hooks.signal?.addEventListener('abort', () => stop.abort());
  const cleanups = [];
  // Everything this run starts except the daemon (clients, databases, sshd, the fixture, the CLI)
  // runs at a lower priority: on one small machine they stand in for other machines, and would
  // otherwise outnumber the daemon for CPU many times over. What setup starts inherits it from this
  // thread; the clients get it from nice(1), so that this thread, which spawns and watches them,
  // keeps its own priority after setup (spawn() waits for the child's exec, and a child at nice 10
  // on a busy machine held this event loop for seconds).
  const priority = os.getPriority();
  const clientNice = Math.max(priority, CLIENT_NICE);
  os.setPriority(clientNice);
  cleanups.push(async () => os.setPriority(priority));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-bench-soak-'));
  // PostgreSQL and MariaDB run as their own users and must reach their dirs inside.
  await exec('chmod', ['755', dir]);
  try {
    const s = await setup(dir, o, cleanups, log, priority);
    os.setPriority(priority);
    s.clients.nice = ['-n', String(clientNice - priority)];
    const { gw } = s;
    const rnd = random(o.seed);

    // One session of each kind first: a setup problem fails here, with its error, not 1000 times.
    log('one session of each kind ...\n');
    const first = ['ssh-exec', 'ssh-pty', 'psql', 'mysql', 'kube'].filter(
      (k) => o.mix[k.replace(/-.*/, '')] > 0,
    );
    const firstRuns = await Promise.all(
      first.map((kind) => runSession(sessionSpec(kind, s.clients, 0.5, rnd), 500, stop.signal)),
    );
    for (const [i, r] of firstRuns.entries())
      if (r.error) throw new Error(`the first ${first[i]} session failed, before any load: ${r.error}`);
    // Idle baseline: after the first sessions (lazy opens: audit files, recordings dir, upstream
    // agents) have closed. A pooled upstream connection to the fixture may still be open (it closes
    // after 5 s idle): FD_SLACK covers it.
    await sleep(1_000);
    const idle = await sampleDaemon(gw, true);
    log(
      `daemon pid ${gw.pid} idle: RSS ${(idle.rss / MiB).toFixed(1)} MiB, heap ${(idle.heapUsed / MiB).toFixed(1)} MiB, ${idle.fds} fds, ${idle.handles} handles\n`,
    );

    const total = KINDS.reduce((sum, k) => sum + o.mix[k], 0);
    const pickKind = () => {
      let x = rnd() * total;
      for (const k of KINDS) {
        x -= o.mix[k];
        if (x < 0) return k;
      }
      return KINDS.findLast((k) => o.mix[k] > 0);
    };
    const stats = {
      live: 0,
      opened: 0,
      closed: 0,
      failed: 0,
      seq: 0,
      sshCount: 0,
      kinds: Object.fromEntries(
        ['ssh-exec', 'ssh-pty', 'psql', 'mysql', 'kube'].map((k) => [
          k,
          { opened: 0, closed: 0, failed: 0, over: [] },
        ]),
      ),
    };
    const failures = [];
    const durationMs = o.minutes * 60_000;
    const warmupMs = (durationMs * o.warmup) / 100;
    // All slots start within the ramp, so 1000 clients are not spawned in the same instant.
    const rampMs = Math.min(30_000, durationMs / 10, warmupMs || Number.POSITIVE_INFINITY);
    const t0 = performance.now();
    const endAt = t0 + durationMs;
    let loading = true;

    const slot = async (i) => {
      await sleep((i * rampMs) / o.sessions);
      while (performance.now() < endAt && !stop.signal.aborted) {
        let kind = pickKind();
        if (kind === 'ssh') kind = stats.sshCount++ % 2 === 0 ? 'ssh-exec' : 'ssh-pty';
        const lifetimeS = o.lifetime[0] + rnd() * (o.lifetime[1] - o.lifetime[0]);
        const n = ++stats.seq;
        const k = stats.kinds[kind];
        stats.opened++;
        k.opened++;
        stats.live++;
        const r = await runSession(
          sessionSpec(kind, s.clients, lifetimeS, rnd),
          lifetimeS * 1000,
          stop.signal,
        );
        stats.live--;
        if (r.aborted) continue;
        if (r.error) {
          stats.failed++;
          k.failed++;
          const f = { t: (performance.now() - t0) / 1000, kind, n, lifetime: lifetimeS, error: r.error };
          if (failures.length < 1000) failures.push(f);
          hooks.failure?.(f);
        } else {
          stats.closed++;
          k.closed++;
          k.over.push(r.ms - lifetimeS * 1000);
        }
      }
    };

    const series = [];
    const checkpoints = { idle };
    // This process's own event-loop delay: when it is late, sessions last longer than planned
    // ("over lifetime"), which says nothing about the daemon.
    const genDelay = monitorEventLoopDelay({ resolution: 10 });
    genDelay.enable();
    let prev = { t: 0, opened: 0, closed: 0, failed: 0, cpuMs: idle.cpuMs, runqWaitMs: idle.runqWaitMs };
    let sampling = false;
    const takeSample = async (phase) => {
      const [d, fixtureLag] = await Promise.all([sampleDaemon(gw), s.fixture.lag()]);
      const t = (performance.now() - t0) / 1000;
      const dt = t - prev.t || 1;
      const row = {
        t: Math.round(t),
        phase,
        live: stats.live,
        openedPerS: (stats.opened - prev.opened) / dt,
        closedPerS: (stats.closed - prev.closed) / dt,
        failedTotal: stats.failed,
        openedTotal: stats.opened,
        rss: d.rss,
        heapUsed: d.heapUsed,
        heapTotal: d.heapTotal,
        external: d.external,
        arrayBuffers: d.arrayBuffers,
        fds: d.fds,
        handles: d.handles,
        threads: d.threads,
        lag: d.lag,
        cpuPct: ((d.cpuMs - prev.cpuMs) / (dt * 1000)) * 100,
        // The share of the interval the event loop was ready to run but had no CPU: lag that
        // comes from the machine, not from the daemon's own work.
        runqWaitPct: ((d.runqWaitMs - prev.runqWaitMs) / (dt * 1000)) * 100,
        fixtureLag,
        generatorLag: {
          p99: Math.max(0, genDelay.percentile(99) / 1e6 - 10),
          max: Math.max(0, genDelay.max / 1e6 - 10),
        },
      };
      genDelay.reset();
      prev = {
        t,
        opened: stats.opened,
        closed: stats.closed,
        failed: stats.failed,
        cpuMs: d.cpuMs,
        runqWaitMs: d.runqWaitMs,
      };
      series.push(row);
      hooks.row?.(row);
      return row;
    };
    let sampleError;
    const ticker = setInterval(() => {
      if (sampling) return;
      sampling = true;
      if (!gw.alive()) {
        sampleError = new Error('the daemon exited during the soak');
        stop.abort();
      }
      const phase = !loading ? 'drain' : performance.now() - t0 < warmupMs ? 'warm-up' : 'load';
      takeSample(phase)
        .catch((e) => {
          sampleError ??= e;
          stop.abort();
        })
        .finally(() => {
          sampling = false;
        });
    }, o.interval * 1000);
    // The settled (collected) heap just after warm-up, under load.
    const warmupTimer = setTimeout(() => {
      sampleDaemon(gw, true)
        .then((x) => {
          checkpoints.warmupSettled = x;
        })
        .catch((e) => {
          sampleError ??= e;
        });
    }, warmupMs);

    log(
      `load: ${o.sessions} concurrent sessions for ${o.minutes} min (ramp ${Math.round(rampMs / 1000)} s, warm-up ${Math.round(warmupMs / 1000)} s), seed ${o.seed}\n`,
    );
    const slots = Array.from({ length: o.sessions }, (_, i) => slot(i));
    // The run's end, or a stop; the timer must not outlive a stopped run (it kept the process).
    let endTimer;
    await new Promise((r) => {
      endTimer = setTimeout(r, durationMs);
      stop.signal.addEventListener('abort', r);
    });
    clearTimeout(endTimer);
    loading = false;
    clearTimeout(warmupTimer);
    if (!stop.signal.aborted) checkpoints.endSettled = await sampleDaemon(gw, true);
    const drainStart = performance.now();
    await Promise.all(slots);
    clearInterval(ticker);
    while (sampling) await sleep(50);
    genDelay.disable();
    if (sampleError) {
      await sleep(500);
      const e = gw.stderr();
      const how = gw.exit();
      throw new Error(
        `${sampleError.message}${how ? `; the daemon exited (code ${how.code}, signal ${how.signal})` : ''}; its stderr (${e.count} lines):\n${[...e.first, ...(e.last.length ? ['...', ...e.last] : [])].join('\n')}`,
      );
    }
    const drainS = (performance.now() - drainStart) / 1000;

    // After the load: no live sessions on the gateway, fds back to the idle baseline.
    const api = await s.api();
    // One gateway here: its own sessions (`unreachable` names peers that did not answer, none).
    const { sessions: live } = await api.listSessions().finally(() => api.close());
    // Back to the idle counts exactly, or 30 s: connections close asynchronously (the API call's
    // own is still closing now).
    const settleStart = performance.now();
    let after = await sampleDaemon(gw);
    while (
      (after.fds > idle.fds || after.handles > idle.handles) &&
      performance.now() - settleStart < 30_000
    ) {
      await sleep(1000);
      after = await sampleDaemon(gw);
    }
    checkpoints.drained = await sampleDaemon(gw, true);
    checkpoints.drained.settleS = (performance.now() - settleStart) / 1000;
    checkpoints.drained.liveSessions = live.length;

    const kinds = Object.fromEntries(
      Object.entries(stats.kinds).map(([k, v]) => {
        const over = v.over.sort((a, b) => a - b);
        return [
          k,
          {
            opened: v.opened,
            closed: v.closed,
            failed: v.failed,
            overheadMs: { p50: pct(over, 50), p99: pct(over, 99) },
          },
        ];
      }),
    );
    const result = {
      options: o,
      env: {
        node: process.version,
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model ?? 'unknown',
        loadavg: os.loadavg(),
        memGiB: os.totalmem() / 1024 ** 3,
      },
      daemonPid: gw.pid,
      durationS: durationMs / 1000,
      warmupS: warmupMs / 1000,
      drainS,
      aborted: stop.signal.aborted,
      sessions: { opened: stats.opened, closed: stats.closed, failed: stats.failed, kinds },
      failures,
      series,
      checkpoints,
      daemonStderr: gw.stderr(),
    };
    result.summary = summarize(result);
    return result;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        log(`cleanup failed: ${e.message}\n`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Least-squares slope of y over t (per second). */
function slope(points) {
  const n = points.length;
  if (n < 2) return 0;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const num = points.reduce((s, p) => s + (p.t - mt) * (p.y - my), 0);
  const den = points.reduce((s, p) => s + (p.t - mt) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

/**
 * Growth after warm-up: the median of the samples in the tenth of the run
 * after warm-up against the median of the last tenth (medians, because the
 * heap saws up and down between collections), plus the trend per hour.
 */
export function summarize(r) {
  const loadRows = r.series.filter((x) => x.phase !== 'drain');
  // A tenth of the run, and at least two samples.
  const tenth = Math.max(r.durationS / 10, 2 * r.options.interval);
  const after = loadRows.filter((x) => x.t >= r.warmupS && x.t <= r.warmupS + tenth);
  const endRows = loadRows.filter((x) => x.t >= r.durationS - tenth);
  const measured = loadRows.filter((x) => x.t >= r.warmupS);
  const window = (rows, f) => (rows.length ? median(rows.map(f)) : Number.NaN);
  const metric = (f) => {
    const a = window(after, f);
    const e = window(endRows, f);
    return {
      afterWarmup: a,
      end: e,
      growth: e / a - 1,
      perHour: slope(measured.map((x) => ({ t: x.t, y: f(x) }))) * 3600,
    };
  };
  const lagRows = (rows) => ({
    p50: window(rows, (x) => x.lag.p50),
    p99: window(rows, (x) => x.lag.p99),
    max: rows.length ? Math.max(...rows.map((x) => x.lag.max)) : Number.NaN,
  });
  const rss = metric((x) => x.rss);
  const heap = metric((x) => x.heapUsed);
  const memoryMet = rss.growth <= GOAL_GROWTH && heap.growth <= GOAL_GROWTH;
  const c = r.checkpoints;
  return {
    rss,
    heapUsed: heap,
    external: metric((x) => x.external + x.arrayBuffers),
    fds: metric((x) => x.fds),
    handles: metric((x) => x.handles),
    lag: { afterWarmup: lagRows(after), end: lagRows(endRows), whole: lagRows(loadRows) },
    fixtureLag: {
      max: loadRows.length ? Math.max(...loadRows.map((x) => x.fixtureLag?.max ?? 0)) : Number.NaN,
    },
    cpuPct: window(loadRows, (x) => x.cpuPct),
    runqWaitPct: window(loadRows, (x) => x.runqWaitPct ?? Number.NaN),
    generatorLag: {
      p99: window(loadRows, (x) => x.generatorLag.p99),
      max: loadRows.length ? Math.max(...loadRows.map((x) => x.generatorLag.max)) : Number.NaN,
    },
    start: loadRows[0],
    /** Sessions opened and failed so far, at the first sample, the first after warm-up, the last under load. */
    counts: Object.fromEntries(
      [
        ['start', loadRows[0]],
        ['afterWarmup', after[0]],
        ['end', loadRows.at(-1)],
      ].map(([k, x]) => [k, x ? { opened: x.openedTotal, failed: x.failedTotal } : undefined]),
    ),
    fdsLeft: c.drained.fds - c.idle.fds,
    handlesLeft: c.drained.handles - c.idle.handles,
    settledHeapGrowth: c.drained.heapUsed / c.idle.heapUsed - 1,
    samplesAfterWarmup: after.length,
    samplesAtEnd: endRows.length,
    goals: {
      memory: { goal: `<= ${GOAL_GROWTH * 100}% growth after warm-up (RSS and heap)`, met: memoryMet },
      failures: {
        goal: '0 failed sessions',
        met: r.sessions.failed === 0 && !r.aborted,
        count: r.sessions.failed,
      },
    },
  };
}

const mib = (b) => (b / MiB).toFixed(1);
const pctText = (x) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%` : 'n/a');

export const ROW_HEADER =
  `${'t s'.padStart(6)} ${'phase'.padEnd(7)} ${'live'.padStart(5)} ${'open/s'.padStart(7)} ${'close/s'.padStart(7)} ${'fail'.padStart(5)}` +
  ` ${'RSS MiB'.padStart(8)} ${'heap MiB'.padStart(8)} ${'ext+ab'.padStart(7)} ${'fds'.padStart(6)} ${'handles'.padStart(7)}` +
  ` ${'lag p50/p99/max ms'.padStart(19)} ${'CPU %'.padStart(6)} ${'wait %'.padStart(6)} ${'kube lag'.padStart(8)}`;

export function formatRow(x) {
  const lag = `${x.lag.p50.toFixed(1)}/${x.lag.p99.toFixed(1)}/${x.lag.max.toFixed(0)}`;
  return (
    `${String(x.t).padStart(6)} ${x.phase.padEnd(7)} ${String(x.live).padStart(5)} ${x.openedPerS.toFixed(1).padStart(7)} ${x.closedPerS.toFixed(1).padStart(7)} ${String(x.failedTotal).padStart(5)}` +
    ` ${mib(x.rss).padStart(8)} ${mib(x.heapUsed).padStart(8)} ${mib(x.external + x.arrayBuffers).padStart(7)} ${String(x.fds).padStart(6)} ${String(x.handles).padStart(7)}` +
    ` ${lag.padStart(19)} ${x.cpuPct.toFixed(0).padStart(6)} ${(x.runqWaitPct ?? Number.NaN).toFixed(0).padStart(6)} ${(x.fixtureLag?.max ?? Number.NaN).toFixed(0).padStart(8)}`
  );
}

/** The summary as text: checkpoints, growth, sessions per kind, failures, goals. */
export function formatSummary(r) {
  const s = r.summary;
  const c = r.checkpoints;
  const o = r.options;
  const lines = [];
  lines.push(
    '',
    `soak: ${o.sessions} concurrent sessions, ${o.minutes} min, mix ${KINDS.map((k) => `${k}=${o.mix[k]}`).join(',')}, lifetime ${o.lifetime[0]}-${o.lifetime[1]} s, seed ${o.seed}`,
    `machine: ${r.env.cpus} CPUs (${r.env.cpu}), ${r.env.memGiB.toFixed(0)} GiB, node ${r.env.node}, load average at the end ${r.env.loadavg.map((x) => x.toFixed(1)).join(' ')} (shared with other work)`,
    `warm-up: first ${o.warmup}% (${r.warmupS.toFixed(0)} s); growth = median of the last 10% of the run vs median of the 10% after warm-up`,
    '',
    `${'checkpoint'.padEnd(26)}${'RSS MiB'.padStart(9)}${'heap MiB'.padStart(10)}${'ext+ab MiB'.padStart(12)}${'fds'.padStart(7)}${'handles'.padStart(9)}${'lag p99 ms'.padStart(12)}${'opened'.padStart(9)}${'failed'.padStart(8)}`,
  );
  const cp = (name, x, lagP99, counts) =>
    lines.push(
      `${name.padEnd(26)}${mib(x.rss).padStart(9)}${mib(x.heapUsed).padStart(10)}${mib(x.external + x.arrayBuffers).padStart(12)}${String(Math.round(x.fds)).padStart(7)}${String(Math.round(x.handles)).padStart(9)}${(lagP99 === undefined ? '-' : lagP99.toFixed(1)).padStart(12)}${String(counts?.opened ?? '-').padStart(9)}${String(counts?.failed ?? '-').padStart(8)}`,
    );
  cp('idle, before load (GC)', c.idle, undefined, { opened: 0, failed: 0 });
  if (s.start) cp(`start (first sample, ${s.start.t} s)`, s.start, s.start.lag.p99, s.counts.start);
  const win = (key) => ({
    rss: s.rss[key],
    heapUsed: s.heapUsed[key],
    external: s.external[key],
    arrayBuffers: 0,
    fds: s.fds[key],
    handles: s.handles[key],
  });
  cp('after warm-up (median)', win('afterWarmup'), s.lag.afterWarmup.p99, s.counts.afterWarmup);
  if (c.warmupSettled) cp('after warm-up (GC)', c.warmupSettled);
  cp('end of load (median)', win('end'), s.lag.end.p99, s.counts.end);
  if (c.endSettled) cp('end of load (GC)', c.endSettled);
  cp('after drain (GC)', c.drained, undefined, r.sessions);
  lines.push(
    '',
    `growth after warm-up: RSS ${pctText(s.rss.growth)} (trend ${(s.rss.perHour / MiB).toFixed(1)} MiB/h), heap used ${pctText(s.heapUsed.growth)} (trend ${(s.heapUsed.perHour / MiB).toFixed(1)} MiB/h), external+arrayBuffers ${pctText(s.external.growth)}`,
    `event-loop lag over the load: p50 ${s.lag.whole.p50.toFixed(1)} ms, p99 ${s.lag.whole.p99.toFixed(1)} ms (medians of the samples), max ${s.lag.whole.max.toFixed(0)} ms; daemon CPU ${s.cpuPct.toFixed(0)}% of a core, its event loop ready but waiting for a CPU ${s.runqWaitPct.toFixed(1)}% of the time (medians)`,
    `kube fixture's (the API server's) event-loop lag: max ${s.fixtureLag.max.toFixed(0)} ms (a late fixture makes kube sessions late)`,
    `load generator's own event-loop lag: p99 ${s.generatorLag.p99.toFixed(0)} ms (median of the samples), max ${s.generatorLag.max.toFixed(0)} ms (it delays the clients, not the daemon)`,
    `after drain: ${c.drained.liveSessions} live sessions on the gateway, fds ${c.drained.fds} vs ${c.idle.fds} idle (${s.fdsLeft >= 0 ? '+' : ''}${s.fdsLeft}, settled in ${c.drained.settleS.toFixed(1)} s), handles ${c.drained.handles} vs ${c.idle.handles}, settled heap ${pctText(s.settledHeapGrowth)} vs idle`,
    ...handleDiff(c.idle.resources, c.drained.resources),
    '',
    `${'sessions'.padEnd(10)}${'opened'.padStart(9)}${'closed ok'.padStart(11)}${'failed'.padStart(8)}${'over lifetime p50/p99 ms'.padStart(27)}`,
  );
  for (const [k, v] of Object.entries(r.sessions.kinds)) {
    if (v.opened === 0) continue;
    lines.push(
      `${k.padEnd(10)}${String(v.opened).padStart(9)}${String(v.closed).padStart(11)}${String(v.failed).padStart(8)}${`${v.overheadMs.p50.toFixed(0)}/${v.overheadMs.p99.toFixed(0)}`.padStart(27)}`,
    );
  }
  lines.push(
    `${'total'.padEnd(10)}${String(r.sessions.opened).padStart(9)}${String(r.sessions.closed).padStart(11)}${String(r.sessions.failed).padStart(8)}`,
  );
  if (r.failures.length > 0) {
    lines.push('', `failed sessions (first ${Math.min(20, r.failures.length)} of ${r.sessions.failed}):`);
    for (const f of r.failures.slice(0, 20)) lines.push(`  ${formatFailure(f)}`);
  }
  if (r.daemonStderr.count > 0) {
    lines.push('', `daemon stderr: ${r.daemonStderr.count} lines, the first ones:`);
    for (const l of r.daemonStderr.first.slice(0, 10)) lines.push(`  ${l}`);
    if (r.daemonStderr.last.length)
      lines.push('  ...', ...r.daemonStderr.last.slice(-10).map((l) => `  ${l}`));
  }
  lines.push(
    '',
    `goal memory ${s.goals.memory.goal}: ${s.goals.memory.met ? 'met' : 'NOT met'} (RSS ${pctText(s.rss.growth)}, heap ${pctText(s.heapUsed.growth)})`,
    `goal ${s.goals.failures.goal}: ${s.goals.failures.met ? 'met' : 'NOT met'} (${s.goals.failures.count} failed${r.aborted ? ', run stopped early' : ''})`,
  );
  return `${lines.join('\n')}\n`;
}

/** The kinds of active handles there are more of after the drain than idle (leak hunting). */
function handleDiff(idle, drained) {
  const more = Object.entries(drained)
    .filter(([k, n]) => n > (idle[k] ?? 0))
    .map(([k, n]) => `${k} ${idle[k] ?? 0} -> ${n}`);
  return more.length ? [`  handles idle -> after drain: ${more.join(', ')}`] : [];
}

export function formatFailure(f) {
  return `FAILED at ${f.t.toFixed(1)} s: ${f.kind} session #${f.n} (lifetime ${f.lifetime.toFixed(1)} s): ${f.error}`;
}

export async function run(argv) {
  const o = parseArgs(argv);
  if (o.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  // Progress goes to stderr with --json, so stdout is only the JSON.
  const progress = o.json ? process.stderr : process.stdout;
  const interrupt = new AbortController();
  const onSigint = () => {
    process.stderr.write('\nstopping: ending the sessions and cleaning up (Ctrl-C again to force) ...\n');
    process.off('SIGINT', onSigint);
    interrupt.abort();
  };
  process.on('SIGINT', onSigint);
  let header = false;
  try {
    const r = await soak(o, {
      signal: interrupt.signal,
      log: (t) => process.stderr.write(t),
      row: (x) => {
        if (!header) {
          progress.write(`${ROW_HEADER}\n`);
          header = true;
        }
        progress.write(`${formatRow(x)}\n`);
      },
      failure: (f) => process.stderr.write(`${formatFailure(f)}\n`),
    });
    if (o.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else process.stdout.write(formatSummary(r));
  } finally {
    process.off('SIGINT', onSigint);
  }
}
