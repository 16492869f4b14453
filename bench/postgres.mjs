// PostgreSQL throughput with pgbench (8 clients, TLS everywhere): straight to
// the server, through pgbouncer, and through Gatehouse with query audit on,
// side by side in one run, and through Gatehouse for a role that audits
// sessions only (db_audit: sessions). Goals (issue 22): Gatehouse >= 0.8x
// pgbouncer; gateway CPU per select-only transaction <= 60 us with statement
// audit, <= 35 us sessions-only. The CPU figures are the steadier ones on a
// shared machine: wall-clock TPS moves with whatever else runs.
//
// pgbouncer cannot pass a client certificate through, so it terminates TLS
// on both sides: clients authenticate to it with the same db-CA client cert
// (auth_type = cert, client_tls_ca_file = Gatehouse's db CA), and it signs in
// to PostgreSQL with its own db-CA client cert for the bench role
// (server_tls_sslmode = verify-full). Pool mode session, like a proxy.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { postgres } from '@gatehouse/adapter-postgres';
import { createGateway } from '@gatehouse/core';
import {
  checkAudited,
  cpuMeter,
  ensurePackages,
  freePort,
  guardLines,
  median,
  roundOrder,
  serverTls,
} from './lib.mjs';

export const description =
  'pgbench TPS (select-only, TPC-B-like; 8 clients, TLS): direct vs pgbouncer vs Gatehouse';

const exec = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';
const PGBOUNCER = '/usr/sbin/pgbouncer';

function parseArgs(argv) {
  const o = {
    seconds: 6,
    rounds: 3,
    clients: 8,
    json: false,
    scale: 1,
    guards: 0,
    only: undefined,
    targets: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--guards') o.guards = Number(argv[++i]);
    else if (a === '--clients') o.clients = Number(argv[++i]);
    else if (a === '--only') o.only = argv[++i];
    else if (a === '--targets') o.targets = argv[++i]?.split(',');
    else
      throw new Error(
        `unknown option ${a} (options: --seconds N, --rounds N, --clients N, --guards N, --only select-only|tpcb-like, --targets direct,pgbouncer,gatehouse,gh sessions, --json)`,
      );
  }
  if (!(o.seconds > 0)) throw new Error('--seconds must be a positive number');
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1)) throw new Error('--rounds must be a positive integer');
  return o;
}

function ensurePeers() {
  ensurePackages([
    [`${PG_BIN}/postgres`, 'postgresql'],
    ['/usr/bin/pgbench', 'postgresql-contrib (or postgresql)'],
    [PGBOUNCER, 'pgbouncer'],
  ]);
}

/**
 * PostgreSQL 15 in `dir` with TLS (a bench CA's server cert) that accepts
 * client certificates from `dbCaPem` (Gatehouse's db CA). Also used by soak.mjs.
 */
export async function startPostgres(dir, dbCaPem, { maxConnections = 100 } = {}) {
  const data = path.join(dir, 'data');
  const tls = path.join(dir, 'tls');
  execFileSync('mkdir', ['-p', tls]);
  serverTls(tls);
  writeFileSync(`${tls}/db-ca.crt`, dbCaPem);
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  chmodSync(dir, 0o755);
  for (const f of ['server.key', 'server.crt', 'db-ca.crt', 'ca.crt']) {
    chownSync(`${tls}/${f}`, uid, gid);
    chmodSync(`${tls}/${f}`, 0o600);
  }
  chownSync(tls, uid, gid);
  chownSync(dir, uid, gid);
  await exec(
    'runuser',
    ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync'],
    { cwd: dir },
  );
  const port = await freePort();
  appendFileSync(
    `${data}/postgresql.conf`,
    `listen_addresses='127.0.0.1'\nport=${port}\nunix_socket_directories='${dir}'\nssl=on\nssl_cert_file='${tls}/server.crt'\nssl_key_file='${tls}/server.key'\nssl_ca_file='${tls}/db-ca.crt'\nfsync=off\nsynchronous_commit=off\nmax_connections=${maxConnections}\n`,
  );
  writeFileSync(`${data}/pg_hba.conf`, 'local all all trust\nhostssl all all 127.0.0.1/32 cert\n');
  await exec(
    'runuser',
    ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, '-l', `${dir}/pg.log`, '-w', 'start'],
    { cwd: dir },
  );
  const psql = (sql, db = 'postgres') =>
    exec('psql', ['-X', '-q', '-h', dir, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql], {
      cwd: dir,
    });
  return {
    port,
    tls,
    psql,
    stop: () =>
      exec('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, '-m', 'immediate', 'stop'], {
        cwd: dir,
      }).catch(() => undefined),
  };
}

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    pub: publicKey.export({ type: 'spki', format: 'pem' }),
  };
}

function writeKey(file, pem, owner) {
  writeFileSync(file, pem, { mode: 0o600 });
  if (owner) chownSync(file, owner.uid, owner.gid);
}

async function pgbench(label, env, port, args, seconds, clients) {
  const r = await exec(
    'pgbench',
    [
      '-h',
      'localhost',
      '-p',
      String(port),
      '-U',
      'bench',
      '-n',
      '-c',
      String(clients),
      '-j',
      '2',
      '-T',
      String(seconds),
      ...args,
      'bench',
    ],
    { env: { PATH: process.env.PATH, HOME: os.tmpdir(), ...env }, maxBuffer: 1 << 24 },
  ).catch((err) => {
    throw new Error(`pgbench ${label} failed: ${err.stderr || err.message}`);
  });
  const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(r.stdout);
  const tx = /number of transactions actually processed: (\d+)/.exec(r.stdout);
  if (!m || !tx) throw new Error(`pgbench ${label}: no tps in output:\n${r.stdout}\n${r.stderr}`);
  return { tps: Number(m[1]), transactions: Number(tx[1]) };
}

async function startPgbouncer(parent, pgPort, files) {
  const port = await freePort();
  const dir = path.join(parent, 'pgbouncer');
  execFileSync('mkdir', ['-p', dir]);
  const ini = path.join(dir, 'pgbouncer.ini');
  writeFileSync(
    ini,
    `[databases]
bench = host=localhost port=${pgPort} dbname=bench user=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = cert
auth_file = ${dir}/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
client_tls_sslmode = verify-full
client_tls_ca_file = ${files.clientCa}
client_tls_cert_file = ${files.serverCert}
client_tls_key_file = ${files.serverKey}
server_tls_sslmode = verify-full
server_tls_ca_file = ${files.serverCa}
server_tls_cert_file = ${files.clientCert}
server_tls_key_file = ${files.clientKey}
`,
  );
  writeFileSync(`${dir}/userlist.txt`, '"bench" ""\n');
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
  for (const f of [dir, ini, `${dir}/userlist.txt`]) chownSync(f, uid, gid);
  const child = spawn('runuser', ['-u', 'postgres', '--', PGBOUNCER, ini], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
  });
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited: ${err}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  // runuser stays as the parent; the proxy whose CPU counts is its child.
  const pid = Number(
    execFileSync('pgrep', ['-P', String(child.pid), '-x', 'pgbouncer'])
      .toString()
      .trim(),
  );
  return { port, pid, stop: () => child.kill('SIGTERM') };
}

/** How fast the gateway's audit log takes db.session.query events, alone (sequential and 8 at a time). */
async function auditRate(gw, seconds) {
  const ev = {
    type: 'db.session.query',
    session_id: 'bench',
    db_service: 'bench',
    db_protocol: 'postgres',
    db_user: 'bench',
    db_name: 'bench',
    user: 'bench',
    query: 'SELECT abalance FROM pgbench_accounts WHERE aid = 42;',
  };
  const out = {};
  for (const par of [1, 8]) {
    const end = Date.now() + seconds * 1000;
    const cpu = cpuMeter();
    let n = 0;
    await Promise.all(
      Array.from({ length: par }, async () => {
        while (Date.now() < end) {
          await gw.audit.emit(ev);
          n++;
        }
      }),
    );
    // Let the index thread catch up, so its CPU for these events counts too.
    await gw.audit.search({ types: ['db.session.query'], limit: 1 });
    out[`cpu_us_per_event_${par}`] = (cpu() * 1000) / n;
    out[`concurrency_${par}`] = Math.round(n / seconds);
  }
  return out;
}

export async function run(argv) {
  const o = parseArgs(argv);
  ensurePeers();
  const root = mkdtempSync(path.join(os.tmpdir(), 'gh-bench-pg-'));
  // PostgreSQL and pgbouncer run as the postgres user and must reach their dirs.
  chmodSync(root, 0o755);
  const cleanups = [];
  try {
    const gw = await createGateway({ dataDir: path.join(root, 'gw'), secondFactor: 'off', env: {} });
    cleanups.push(() => gw.close());
    // GATEHOUSE_BENCH_PG_ADAPTER: another build of the adapter's index.js, to compare a change.
    const adapter = process.env.GATEHOUSE_BENCH_PG_ADAPTER
      ? (await import(pathToFileURL(path.resolve(process.env.GATEHOUSE_BENCH_PG_ADAPTER)).href)).postgres
      : postgres;
    gw.use(adapter());
    const { port: gwPort } = await gw.listen({ host: '127.0.0.1', port: 0 });
    const pgDir = path.join(root, 'pg');
    execFileSync('mkdir', ['-p', pgDir]);
    const pg = await startPostgres(pgDir, gw.exportCa('postgres'));
    cleanups.push(() => pg.stop());
    await pg.psql('CREATE ROLE bench LOGIN');
    await pg.psql('CREATE DATABASE bench OWNER bench');
    await exec('pgbench', [
      '-i',
      '-q',
      '-s',
      String(o.scale),
      '-h',
      pgDir,
      '-p',
      String(pg.port),
      '-U',
      'bench',
      'bench',
    ]);

    const owner = {
      uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
      gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
    };
    const files = path.join(root, 'files');
    execFileSync('mkdir', ['-p', files]);
    chmodSync(files, 0o755);
    // A db-CA client cert with CN=bench: used straight by pgbench (direct, pgbouncer clients) and by pgbouncer upstream.
    const dbKey = keyPair();
    const now = Date.now();
    const dbCert = await gw.authorities.issueDbClientCert({
      publicKeyPem: dbKey.pub,
      dbUser: 'bench',
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
    writeKey(`${files}/db.crt`, dbCert.cert, owner);
    writeKey(`${files}/db.key`, dbKey.key, owner);
    // pgbench (running as root) needs its own copy of the key it owns.
    writeKey(`${files}/db-client.crt`, dbCert.cert);
    writeKey(`${files}/db-client.key`, dbKey.key);
    writeKey(`${files}/db-ca.crt`, gw.exportCa('postgres'), owner);
    writeKey(`${files}/pg-ca.crt`, execFileSync('cat', [`${pg.tls}/ca.crt`]).toString(), owner);
    writeKey(`${files}/pg-ca-client.crt`, execFileSync('cat', [`${pg.tls}/ca.crt`]).toString());
    writeKey(`${files}/bouncer.crt`, execFileSync('cat', [`${pg.tls}/server.crt`]).toString(), owner);
    writeKey(`${files}/bouncer.key`, execFileSync('cat', [`${pg.tls}/server.key`]).toString(), owner);
    const bouncer = await startPgbouncer(files, pg.port, {
      clientCa: `${files}/db-ca.crt`,
      serverCert: `${files}/bouncer.crt`,
      serverKey: `${files}/bouncer.key`,
      serverCa: `${files}/pg-ca.crt`,
      clientCert: `${files}/db.crt`,
      clientKey: `${files}/db.key`,
    });
    cleanups.push(() => bouncer.stop());

    // Gatehouse: a user whose role allows db user bench, with a route cert like `gatehouse db login` writes.
    await gw.admin.addDatabase({
      name: 'bench',
      protocol: 'postgres',
      uri: `localhost:${pg.port}`,
      ca_pem: execFileSync('cat', [`${pg.tls}/ca.crt`]).toString(),
      labels: { engine: 'postgres' },
    });
    await gw.admin.putRole(
      'kind: role\nname: bench\nallow:\n  db_labels: { engine: postgres }\n  db_users: [bench]\n  db_names: [bench]\n',
      { create: true },
    );
    await gw.admin.createUser({ name: 'bench', roles: ['bench'], traits: {} });
    const userKey = keyPair();
    const userCert = await gw.authorities.issueX509UserCert({
      publicKeyPem: userKey.pub,
      identity: {
        user: 'bench',
        roles: ['bench'],
        traits: {},
        expires: new Date(now + 3_600_000),
        route: { kind: 'db', name: 'bench' },
      },
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
    writeKey(`${files}/user.crt`, userCert.cert);
    writeKey(`${files}/user.key`, userKey.key);
    // The same database through a role that audits sessions only (db_audit: sessions): what
    // relaying costs without a record per statement.
    await gw.admin.putRole(
      'kind: role\nname: bench-sessions\nallow:\n  db_labels: { engine: postgres }\n  db_users: [bench]\n  db_names: [bench]\noptions:\n  db_audit: sessions\n',
      { create: true },
    );
    await gw.admin.createUser({ name: 'benchs', roles: ['bench-sessions'], traits: {} });
    const sessionsCert = await gw.authorities.issueX509UserCert({
      publicKeyPem: userKey.pub,
      identity: {
        user: 'benchs',
        roles: ['bench-sessions'],
        traits: {},
        expires: new Date(now + 3_600_000),
        route: { kind: 'db', name: 'bench' },
      },
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
    });
    writeKey(`${files}/users.crt`, sessionsCert.cert);
    // --guards N: the same user's sessions under a role with N content guards on statements and
    // results, as one more target, to measure what scanning every byte costs.
    if (o.guards > 0) {
      await gw.admin.putRole(
        `kind: role\nname: bench-guarded\nallow:\n  db_labels: { engine: postgres }\n  db_users: [bench]\n  db_names: [bench]\noptions:\n${guardLines(o.guards, ['query', 'result'])}\n`,
        { create: true },
      );
      await gw.admin.createUser({ name: 'benchg', roles: ['bench-guarded'], traits: {} });
      const guarded = await gw.authorities.issueX509UserCert({
        publicKeyPem: userKey.pub,
        identity: {
          user: 'benchg',
          roles: ['bench-guarded'],
          traits: {},
          expires: new Date(now + 3_600_000),
          route: { kind: 'db', name: 'bench' },
        },
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 3_600_000),
      });
      writeKey(`${files}/userg.crt`, guarded.cert);
    }
    writeKey(
      `${files}/host-ca.crt`,
      gw.authorities
        .get('host')
        .map((k) => k.x509CertPem)
        .join('\n'),
    );

    const allTargets = [
      {
        name: 'direct',
        port: pg.port,
        env: {
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: `${files}/pg-ca-client.crt`,
          PGSSLCERT: `${files}/db-client.crt`,
          PGSSLKEY: `${files}/db-client.key`,
        },
      },
      {
        name: 'pgbouncer',
        port: bouncer.port,
        meter: () => cpuMeter(bouncer.pid),
        env: {
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: `${files}/pg-ca-client.crt`,
          PGSSLCERT: `${files}/db-client.crt`,
          PGSSLKEY: `${files}/db-client.key`,
        },
      },
      {
        name: 'gatehouse',
        user: 'bench',
        port: gwPort,
        // The gateway runs in this process: its CPU is this process's, every thread.
        meter: () => cpuMeter(),
        env: {
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: `${files}/host-ca.crt`,
          PGSSLCERT: `${files}/user.crt`,
          PGSSLKEY: `${files}/user.key`,
        },
      },
      {
        name: 'gh sessions',
        user: 'benchs',
        sessionsOnly: true,
        port: gwPort,
        meter: () => cpuMeter(),
        env: {
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: `${files}/host-ca.crt`,
          PGSSLCERT: `${files}/users.crt`,
          PGSSLKEY: `${files}/user.key`,
        },
      },
    ];
    if (o.guards > 0) {
      allTargets.push({
        name: `gh+${o.guards}g`,
        user: 'benchg',
        port: gwPort,
        meter: () => cpuMeter(),
        env: {
          PGSSLMODE: 'verify-full',
          PGSSLROOTCERT: `${files}/host-ca.crt`,
          PGSSLCERT: `${files}/userg.crt`,
          PGSSLKEY: `${files}/user.key`,
        },
      });
    }
    // --targets: a subset (pgbouncer stays, as the reference of the ratios).
    const targets = allTargets.filter(
      (t) => o.targets === undefined || t.name === 'pgbouncer' || o.targets.includes(t.name),
    );
    // statements: what one transaction sends (pgbench's built-in scripts).
    const modes = [
      { name: 'select-only', args: ['-S'], statements: 1 },
      { name: 'tpcb-like', args: [], statements: 7 },
    ].filter((m) => o.only === undefined || m.name === o.only);
    /** Statements each target sent through the gateway (pgbench transactions x statements per transaction). */
    const sent = new Map(targets.map((t) => [t.name, 0]));
    // Rounds interleave the targets (rotated each round) and each figure is the median round:
    // runs on this kind of shared machine vary by 15-25%, and a slow spell should hit every target.
    const results = [];
    for (const m of modes) {
      const runs = new Map(targets.map((t) => [t.name, { tps: [], cpu: [] }]));
      for (let round = 0; round < o.rounds; round++) {
        for (const t of roundOrder(targets, round)) {
          const cpu = t.meter?.();
          const { tps, transactions } = await pgbench(
            `${t.name} ${m.name}`,
            t.env,
            t.port,
            m.args,
            o.seconds,
            o.clients,
          );
          const cpuMs = cpu?.();
          sent.set(t.name, sent.get(t.name) + transactions * m.statements);
          runs.get(t.name).tps.push(tps);
          // The proxy's own CPU (all its threads) per transaction; none for direct.
          if (cpuMs !== undefined) runs.get(t.name).cpu.push((cpuMs * 1000) / (tps * o.seconds));
          process.stderr.write(
            `${m.name.padEnd(12)} ${t.name.padEnd(10)} round ${round + 1}/${o.rounds}: ${tps.toFixed(0)} tps\n`,
          );
        }
      }
      for (const t of targets) {
        const r = runs.get(t.name);
        results.push({
          mode: m.name,
          target: t.name,
          tps: median(r.tps),
          runs: r.tps,
          ...(r.cpu.length > 0 ? { proxy_cpu_us_per_tx: median(r.cpu) } : {}),
        });
      }
    }
    const backlog = gw.audit.backlog();
    // Each statement through the gateway waited for its record: count them in the record (before
    // auditRate adds its own events), and the sessions-only sessions, which say so in their start.
    const { audited, ok: auditOk } = checkAudited(path.join(root, 'gw'), targets, sent);
    const audit = await auditRate(gw, Math.min(3, o.seconds));
    const ratio = (mode, target) => {
      const b = results.find((r) => r.mode === mode && r.target === 'pgbouncer').tps;
      return (results.find((r) => r.mode === mode && r.target === target)?.tps ?? Number.NaN) / b;
    };
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ seconds: o.seconds, rounds: o.rounds, clients: o.clients, results, audit_backlog: backlog, audit_events_per_second: audit, audited, audit_ok: auditOk }, null, 2)}\n`,
      );
      return;
    }
    process.stdout.write(
      `\npgbench, ${o.clients} clients, median of ${o.rounds} interleaved rounds of ${o.seconds} s, TLS on every hop; gatehouse: statement audit (db_audit: statements), gh sessions: session audit only (db_audit: sessions)\n\n`,
    );
    process.stdout.write(
      `${'mode'.padEnd(13)}${'target'.padEnd(11)}${'TPS'.padStart(9)}  ${'(min-max)'.padEnd(13)}vs pgbouncer  proxy CPU per tx\n`,
    );
    for (const r of results) {
      const cpu = r.proxy_cpu_us_per_tx === undefined ? '-' : `${r.proxy_cpu_us_per_tx.toFixed(0)} us`;
      const spread = `(${Math.min(...r.runs).toFixed(0)}-${Math.max(...r.runs).toFixed(0)})`;
      process.stdout.write(
        `${r.mode.padEnd(13)}${r.target.padEnd(11)}${r.tps.toFixed(0).padStart(9)}  ${spread.padEnd(13)}${`${ratio(r.mode, r.target).toFixed(2)}x`.padStart(12)}  ${cpu.padStart(16)}\n`,
      );
    }
    process.stdout.write('\naudit record (JSON lines), counted after the rounds:\n');
    for (const a of audited) {
      process.stdout.write(
        `  ${a.target.padEnd(12)} db_audit ${a.db_audit.padEnd(10)} statements sent ${a.statements_sent}, db.session.query recorded ${a.statements_recorded}, sessions recorded ${a.sessions_recorded}\n`,
      );
    }
    process.stdout.write(
      `  ${auditOk ? 'ok: every statement through a statements role has its record; sessions-only sessions have none, and say so' : 'MISMATCH: see the counts above'}\n`,
    );
    process.stdout.write(
      `\naudit log alone (db.session.query events/s): sequential ${audit.concurrency_1}, 8 concurrent ${audit.concurrency_8}; CPU per event (both threads, indexed) ${audit.cpu_us_per_event_1.toFixed(0)} / ${audit.cpu_us_per_event_8.toFixed(0)} us\n`,
    );
    const worst = Math.min(...modes.map((m) => ratio(m.name, 'gatehouse')));
    const cpuOf = (target) =>
      results.find((r) => r.mode === 'select-only' && r.target === target)?.proxy_cpu_us_per_tx ?? 0;
    process.stdout.write(
      [
        `goal Gatehouse >= 0.8x pgbouncer, statement audit on: ${worst >= 0.8 ? 'met' : 'NOT met'} (worst ${worst.toFixed(2)}x)`,
        `goal proxy CPU per select-only tx <= 60 us, statement audit on: ${cpuOf('gatehouse') <= 60 ? 'met' : 'NOT met'} (${cpuOf('gatehouse').toFixed(0)} us)`,
        `goal proxy CPU per select-only tx <= 35 us, sessions-only audit: ${cpuOf('gh sessions') <= 35 ? 'met' : 'NOT met'} (${cpuOf('gh sessions').toFixed(0)} us)`,
        '',
      ].join('\n'),
    );
  } finally {
    for (const c of cleanups.reverse()) await c();
    rmSync(root, { recursive: true, force: true });
  }
}
