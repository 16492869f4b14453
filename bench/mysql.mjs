// MySQL throughput with sysbench (oltp_point_select and oltp_read_only,
// 8 threads, TLS everywhere): straight to MariaDB, through haproxy in TCP
// mode, and through Gatehouse with statement audit on and for a role that
// audits sessions only (db_audit: sessions), side by side in one run. Goal
// (issue 22): Gatehouse with statement audit >= 0.8x haproxy.
//
// sysbench 1.0 with --mysql-ssl=on presents client-cert.pem/client-key.pem
// and trusts cacert.pem from its working directory, so each target gets its
// own directory: direct and haproxy (TLS passes through it) use a db-CA
// client certificate for the bench user (MariaDB's REQUIRE SUBJECT checks
// it); Gatehouse gets a Gatehouse user certificate routed to the database,
// on the dedicated MySQL port, like `gatehouse db login` would write.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { mysql } from '@gatehouse/adapter-mysql';
import { createGateway } from '@gatehouse/core';
import { checkAudited, cpuMeter, ensurePackages, freePort, median, roundOrder, serverTls } from './lib.mjs';

export const description =
  'sysbench QPS (oltp_point_select, oltp_read_only; 8 threads, TLS): direct vs haproxy (TCP) vs Gatehouse';

const exec = promisify(execFile);

function parseArgs(argv) {
  const o = { seconds: 6, rounds: 3, threads: 8, tableSize: 10_000, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--seconds') o.seconds = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--threads') o.threads = Number(argv[++i]);
    else if (a === '--table-size') o.tableSize = Number(argv[++i]);
    else
      throw new Error(
        `unknown option ${a} (options: --seconds N, --rounds N, --threads N, --table-size N, --json)`,
      );
  }
  if (
    !(o.seconds > 0) ||
    !(o.threads > 0) ||
    !(o.tableSize > 0) ||
    !(Number.isInteger(o.rounds) && o.rounds > 0)
  )
    throw new Error('options must be positive numbers (--rounds a whole one)');
  return o;
}

function ensurePeers() {
  ensurePackages([
    ['/usr/sbin/mariadbd', 'mariadb-server'],
    ['/usr/bin/mariadb', 'mariadb-client'],
    ['/usr/bin/sysbench', 'sysbench'],
    ['/usr/sbin/haproxy', 'haproxy'],
  ]);
}

async function waitPort(port, child, what) {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not listen on ${port}`);
}

/**
 * MariaDB in `dir` requiring TLS (a bench CA's server cert) and trusting
 * `dbCaPem` (Gatehouse's db CA) for X.509 users. Also used by soak.mjs.
 */
export async function startMariadb(dir, dbCaPem, { maxConnections = 500 } = {}) {
  const uid = Number(execFileSync('id', ['-u', 'mysql']).toString());
  const gid = Number(execFileSync('id', ['-g', 'mysql']).toString());
  const tls = path.join(dir, 'tls');
  const data = path.join(dir, 'data');
  const run = path.join(dir, 'run');
  for (const d of [tls, data, run]) mkdirSync(d);
  serverTls(tls);
  writeFileSync(`${tls}/db-ca.crt`, dbCaPem);
  for (const f of ['server.key', 'server.crt', 'db-ca.crt']) chownSync(`${tls}/${f}`, uid, gid);
  for (const d of [data, run]) chownSync(d, uid, gid);
  execFileSync(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${data}`,
      '--user=mysql',
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
    ],
    {
      stdio: 'ignore',
    },
  );
  const port = await freePort();
  const sock = `${run}/sock`;
  let log = '';
  const child = spawn(
    '/usr/sbin/mariadbd',
    [
      '--no-defaults',
      '--user=mysql',
      `--datadir=${data}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${sock}`,
      `--pid-file=${run}/pid`,
      `--ssl-ca=${tls}/db-ca.crt`,
      `--ssl-cert=${tls}/server.crt`,
      `--ssl-key=${tls}/server.key`,
      '--require-secure-transport=ON',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=128M',
      '--innodb-flush-log-at-trx-commit=0',
      `--max-connections=${maxConnections}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr.on('data', (d) => {
    log += d;
  });
  await waitPort(port, child, 'mariadbd');
  while (!log.includes('ready for connections')) {
    if (child.exitCode !== null) throw new Error(`mariadbd exited:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    caFile: `${tls}/ca.crt`,
    sql: (text) => exec('mariadb', ['--no-defaults', '-S', sock, '-uroot', '-e', text]),
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

async function startHaproxy(dir, backendPort) {
  const port = await freePort();
  const cfg = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  maxconn 4096',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 1m',
      '  timeout server 1m',
      'frontend mysql',
      `  bind 127.0.0.1:${port}`,
      '  default_backend db',
      'backend db',
      `  server db1 127.0.0.1:${backendPort}`,
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitPort(port, child, 'haproxy');
  return {
    port,
    pid: child.pid,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    },
  };
}

function keyPair() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pub: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** A directory with the three files sysbench --mysql-ssl=on reads. */
function certDir(dir, name, cert, key, ca) {
  const d = path.join(dir, name);
  mkdirSync(d);
  writeFileSync(path.join(d, 'client-cert.pem'), cert);
  writeFileSync(path.join(d, 'client-key.pem'), key);
  chmodSync(path.join(d, 'client-key.pem'), 0o600);
  writeFileSync(path.join(d, 'cacert.pem'), ca);
  return d;
}

function sysbenchArgs(test, port, o) {
  return [
    test,
    '--db-driver=mysql',
    '--mysql-host=127.0.0.1',
    `--mysql-port=${port}`,
    '--mysql-user=alice',
    '--mysql-db=sbtest',
    '--mysql-ssl=on',
    '--tables=1',
    `--table-size=${o.tableSize}`,
    `--threads=${o.threads}`,
    `--time=${o.seconds}`,
    '--report-interval=0',
  ];
}

async function sysbench(test, port, cwd, o) {
  const { stdout } = await exec('sysbench', [...sysbenchArgs(test, port, o), 'run'], {
    cwd,
    maxBuffer: 16 << 20,
  });
  const qps = /queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)/.exec(stdout);
  const errors = /ignored errors:\s+(\d+)/.exec(stdout);
  if (!qps) throw new Error(`cannot read QPS from sysbench:\n${stdout}`);
  return { qps: Number(qps[2]), queries: Number(qps[1]), errors: Number(errors?.[1] ?? 0) };
}

export async function run(argv) {
  const o = parseArgs(argv);
  ensurePeers();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gh-bench-mysql-'));
  chmodSync(dir, 0o755);
  const stops = [];
  try {
    const gw = await createGateway({
      dataDir: path.join(dir, 'gw'),
      clusterName: 'bench',
      secondFactor: 'off',
      values: { mysql_listen: '127.0.0.1:0' },
      env: {},
    });
    stops.push(() => gw.close());
    gw.use(mysql());
    const bound = await gw.listen({ host: '127.0.0.1', port: 0 });
    const db = await startMariadb(dir, gw.exportCa('mariadb'));
    stops.push(db.stop);
    await db.sql(
      "CREATE DATABASE sbtest; CREATE USER alice@'%' REQUIRE SUBJECT '/CN=alice/O=bench'; GRANT ALL ON sbtest.* TO alice@'%'",
    );
    const serverCa = readFileSync(db.caFile, 'utf8');
    await gw.admin.addDatabase({
      name: 'sbtest',
      protocol: 'mysql',
      uri: `localhost:${db.port}`,
      ca_pem: serverCa,
      labels: { engine: 'mariadb' },
    });
    await gw.admin.putRole(
      'kind: role\nname: bench\nallow:\n  db_labels: { engine: mariadb }\n  db_users: [alice]\n  db_names: [sbtest]\n',
      { create: true },
    );
    await gw.admin.createUser({ name: 'alice', roles: ['bench'], traits: {} });
    const now = Date.now();
    const window = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) };
    const dbKey = keyPair();
    const dbCert = await gw.authorities.issueDbClientCert({
      publicKeyPem: dbKey.pub,
      dbUser: 'alice',
      ...window,
    });
    const direct = certDir(dir, 'direct', dbCert.cert, dbKey.key, serverCa);
    const userKey = keyPair();
    const userCert = await gw.authorities.issueX509UserCert({
      publicKeyPem: userKey.pub,
      identity: {
        user: 'alice',
        roles: ['bench'],
        traits: {},
        expires: window.notAfter,
        route: { kind: 'db', name: 'sbtest' },
      },
      ...window,
    });
    const hostCa = gw.authorities
      .get('host')
      .map((k) => k.x509CertPem)
      .join('\n');
    const viaGatehouse = certDir(dir, 'gatehouse', userCert.cert, userKey.key, hostCa);
    // The same database through a role that audits sessions only (db_audit: sessions).
    await gw.admin.putRole(
      'kind: role\nname: bench-sessions\nallow:\n  db_labels: { engine: mariadb }\n  db_users: [alice]\n  db_names: [sbtest]\noptions:\n  db_audit: sessions\n',
      { create: true },
    );
    await gw.admin.createUser({ name: 'alices', roles: ['bench-sessions'], traits: {} });
    const sessionsCert = await gw.authorities.issueX509UserCert({
      publicKeyPem: userKey.pub,
      identity: {
        user: 'alices',
        roles: ['bench-sessions'],
        traits: {},
        expires: window.notAfter,
        route: { kind: 'db', name: 'sbtest' },
      },
      ...window,
    });
    const viaSessions = certDir(dir, 'gatehouse-sessions', sessionsCert.cert, userKey.key, hostCa);
    const hp = await startHaproxy(dir, db.port);
    stops.push(hp.stop);
    await exec('sysbench', [...sysbenchArgs('oltp_read_only', db.port, o), 'prepare'], { cwd: direct });
    const targets = [
      { name: 'direct', port: db.port, cwd: direct },
      { name: 'haproxy (tcp)', port: hp.port, cwd: direct, meter: () => cpuMeter(hp.pid) },
      // The gateway runs in this process: its CPU is this process's, every thread.
      {
        name: 'gatehouse (statements)',
        user: 'alice',
        port: bound.dedicated.mysql.port,
        cwd: viaGatehouse,
        meter: () => cpuMeter(),
      },
      {
        name: 'gatehouse (sessions)',
        user: 'alices',
        sessionsOnly: true,
        port: bound.dedicated.mysql.port,
        cwd: viaSessions,
        meter: () => cpuMeter(),
      },
    ];
    /** Statements each target sent (sysbench's own count). */
    const sent = new Map(targets.map((t) => [t.name, 0]));
    // Rounds interleave the targets (rotated each round) and each figure is the median round:
    // runs on this kind of shared machine vary by 15-25%, and a slow spell should hit every target.
    const results = [];
    for (const test of ['oltp_point_select', 'oltp_read_only']) {
      const runs = new Map(targets.map((t) => [t.name, { qps: [], cpu: [], errors: 0 }]));
      for (let round = 0; round < o.rounds; round++) {
        for (const t of roundOrder(targets, round)) {
          if (!o.json)
            process.stderr.write(
              `${test} via ${t.name} (${o.seconds}s, round ${round + 1}/${o.rounds}) ...\n`,
            );
          const cpu = t.meter?.();
          const r = await sysbench(test, t.port, t.cwd, o);
          const cpuMs = cpu?.();
          const run = runs.get(t.name);
          sent.set(t.name, sent.get(t.name) + r.queries);
          run.qps.push(r.qps);
          run.errors += r.errors;
          // The proxy's own CPU per statement; none for direct.
          if (cpuMs !== undefined) run.cpu.push((cpuMs * 1000) / (r.qps * o.seconds));
        }
      }
      for (const t of targets) {
        const run = runs.get(t.name);
        results.push({
          test,
          target: t.name,
          qps: median(run.qps),
          runs: run.qps,
          errors: run.errors,
          ...(run.cpu.length > 0 ? { proxy_cpu_us_per_query: median(run.cpu) } : {}),
        });
      }
    }
    // Every statement through a statements role waited for its record: count them in the record.
    const { audited, ok: auditOk } = checkAudited(path.join(dir, 'gw'), targets, sent);
    if (o.json) {
      process.stdout.write(
        `${JSON.stringify({ threads: o.threads, seconds: o.seconds, rounds: o.rounds, results, audited, audit_ok: auditOk }, null, 2)}\n`,
      );
      return;
    }
    process.stdout.write(
      `\nsysbench ${o.threads} threads, median of ${o.rounds} interleaved rounds of ${o.seconds}s, TLS, table size ${o.tableSize}\n`,
    );
    process.stdout.write(
      `${'test'.padEnd(20)}${'target'.padEnd(24)}${'QPS'.padStart(12)}${'vs haproxy'.padStart(12)}${'errors'.padStart(8)}${'proxy CPU/query'.padStart(17)}\n`,
    );
    for (const test of ['oltp_point_select', 'oltp_read_only']) {
      const rows = results.filter((r) => r.test === test);
      const base = rows.find((r) => r.target.startsWith('haproxy'))?.qps ?? 0;
      for (const r of rows) {
        const ratio = base ? `${(r.qps / base).toFixed(2)}x` : '-';
        const cpu =
          r.proxy_cpu_us_per_query === undefined ? '-' : `${r.proxy_cpu_us_per_query.toFixed(0)} us`;
        process.stdout.write(
          `${test.padEnd(20)}${r.target.padEnd(24)}${r.qps.toFixed(0).padStart(12)}${ratio.padStart(12)}${String(r.errors).padStart(8)}${cpu.padStart(17)}\n`,
        );
      }
    }
    process.stdout.write('\naudit record (JSON lines), counted after the rounds:\n');
    for (const a of audited) {
      process.stdout.write(
        `  ${a.target.padEnd(24)} statements sent ${a.statements_sent}, db.session.query recorded ${a.statements_recorded}, sessions recorded ${a.sessions_recorded}\n`,
      );
    }
    process.stdout.write(
      `  ${auditOk ? 'ok: every statement through a statements role has its record; sessions-only sessions have none, and say so' : 'MISMATCH: see the counts above'}\n`,
    );
    const worst = Math.min(
      ...['oltp_point_select', 'oltp_read_only'].map((test) => {
        const rows = results.filter((r) => r.test === test);
        return (
          rows.find((r) => r.target === 'gatehouse (statements)').qps /
          rows.find((r) => r.target.startsWith('haproxy')).qps
        );
      }),
    );
    process.stdout.write(
      `goal Gatehouse >= 0.8x haproxy, statement audit on: ${worst >= 0.8 ? 'met' : 'NOT met'} (worst ${worst.toFixed(2)}x)\n`,
    );
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}
