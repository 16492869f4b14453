// Several gateways on one PostgreSQL (issue 18): password logins/s and SSH
// session setups/s through 1, 2 and 3 `gatehouse start --config` processes
// sharing one database (clients spread round-robin over the gateways), side
// by side with the ratio to one gateway; then lock propagation: the time from
// `users lock` (issued through another gateway instance) to the end of live
// SSH sessions on the other gateways (p50, p99; goal p99 <= 1 s).
// Usage: npm run bench -- ha [--seconds 5] [--concurrency 8] [--locks 20] [--rounds 1]
// Needs: PostgreSQL 15, OpenSSH client and server, and root (PostgreSQL runs as
// `postgres`, and the bench adds a test login). Everything runs on this machine:
// clients, sshd, the gateways and PostgreSQL share its cores.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { addLoginAccount, ensurePackages, median, roundOrder } from './lib.mjs';
import { startPostgres } from './postgres.mjs';

export const description =
  'several gateways on one PostgreSQL: logins/s and SSH setups/s through 1, 2, 3 gateways; lock propagation p50/p99';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(root, 'packages/cli/bin/gatehouse.js');
const PG_BIN = '/usr/lib/postgresql/15/bin';
const exec = promisify(execFile);
const PASSWORD = 'bench password 123';
const SECRETS_KEY_ENV = 'GATEHOUSE_SECRETS_KEY';

function flag(argv, name, def) {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : def;
}

function percentile(xs, p) {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

/** `gatehouse start --config FILE` as its own process; resolves once it prints where it listens. */
function startGateway(configFile, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'start', '--config', configFile], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}\n${err}`)), 60_000);
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code) => reject(new Error(`gatehouse start exited ${code}:\n${out}\n${err}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = /proxy:\s+(\S+)\n/.exec(out) ?? /accept-invite --proxy (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        const stop = () =>
          new Promise((r) => {
            if (child.exitCode !== null) return r();
            child.removeAllListeners('exit');
            child.once('exit', () => r());
            child.kill('SIGTERM');
          });
        resolve({ proxy: m[1], pid: child.pid, stop });
      }
    });
  });
}

/** Runs `fn` from `concurrency` workers for `seconds`; returns completed operations per second. */
async function rate(seconds, concurrency, fn) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let failed = 0;
  let firstError;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; performance.now() < end; i++) {
        try {
          await fn(w, i);
          done++;
        } catch (e) {
          failed++;
          firstError ??= e;
        }
      }
    }),
  );
  if (failed > 0 && done === 0) throw firstError;
  return { perSec: done / ((performance.now() - t0) / 1000), failed };
}

/** Runs a command to completion with stdout discarded. */
function runQuiet(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err.trim()}`)),
    );
  });
}

export async function run(argv) {
  const seconds = flag(argv, '--seconds', 5);
  const concurrency = flag(argv, '--concurrency', 8);
  const locks = flag(argv, '--locks', 20);
  const rounds = flag(argv, '--rounds', 1);
  ensurePackages([
    [`${PG_BIN}/postgres`, 'postgresql'],
    ['/usr/sbin/sshd', 'openssh-server'],
  ]);
  const { createGateway, fetchPinnedCa, GatehouseClient, loadConfig, parseHostPort } = await import(
    '@gatehouse/core'
  );
  const { startSshd } = await import('@gatehouse/core/testing');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-ha-'));
  const cleanups = [];
  const { login, remove } = await addLoginAccount();
  cleanups.push(remove);
  try {
    // PostgreSQL; gateways reach it over its Unix socket (trust), so TLS to the database is not measured.
    // Its own temp dir: startPostgres hands it to the postgres user (the bench dir is root's, mode 0700).
    const pgDir = await mkdtemp(path.join(os.tmpdir(), 'gh-bench-ha-pg-'));
    cleanups.push(() => rm(pgDir, { recursive: true, force: true }));
    await exec('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ed25519',
      '-nodes',
      '-subj',
      '/CN=bench-unused',
      '-keyout',
      path.join(dir, 'unused.key'),
      '-out',
      path.join(dir, 'unused.crt'),
      '-days',
      '1',
    ]);
    const pg = await startPostgres(pgDir, await readFile(path.join(dir, 'unused.crt'), 'utf8'), {
      maxConnections: 200,
    });
    cleanups.push(() => pg.stop());
    await pg.psql('CREATE DATABASE gh');
    const env = { ...process.env, [SECRETS_KEY_ENV]: randomBytes(32).toString('base64') };
    delete env.GATEHOUSE_DATA_DIR;
    const config = async (name) => {
      const file = path.join(dir, `${name}.yaml`);
      await writeFile(
        file,
        [
          'cluster_name: hab',
          `data_dir: ${path.join(dir, name)}`,
          'listen: 127.0.0.1:0',
          'mysql_listen: "off"',
          'auth: { second_factor: "off", login_rate_per_minute: 1000000 }',
          `backend: { type: postgres, uri: "postgres://postgres@localhost:${pg.port}/gh?host=${pgDir}" }`,
          '',
        ].join('\n'),
      );
      return file;
    };
    // The admin's handle: a gateway instance on the same database that does not listen.
    const adminFile = await config('admin');
    const adm = await createGateway({ config: await loadConfig({ file: adminFile, env }), env });
    cleanups.push(() => adm.close());
    await adm.admin.createUser({
      name: 'bench',
      roles: ['access'],
      traits: { logins: [login] },
      password: PASSWORD,
    });
    const gws = [];
    for (const name of ['gw-a', 'gw-b', 'gw-c']) {
      const g = await startGateway(await config(name), env);
      cleanups.push(g.stop);
      gws.push(g);
    }
    process.stdout.write(`3 gateways on one PostgreSQL 15: ${gws.map((g) => g.proxy).join(', ')}\n`);

    // The node: a real sshd trusting the cluster's user CA, with a host certificate.
    const hostKey = path.join(dir, 'ssh_host_ed25519_key');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    const hc = await adm.authorities.issueSshHostCert({
      publicKey: (await readFile(`${hostKey}.pub`, 'utf8')).trim(),
      keyId: 'node1',
      principals: ['node1', '127.0.0.1'],
      validAfter: new Date(),
      validBefore: new Date(Date.now() + 3600e3),
    });
    await writeFile(`${hostKey}-cert.pub`, `${hc.cert}\n`);
    const nodeDir = path.join(dir, 'node');
    await exec('mkdir', ['-p', nodeDir]);
    const node = await startSshd({
      dir: nodeDir,
      userCaKeys: adm.exportCa('sshd'),
      hostKey,
      hostCert: `${hostKey}-cert.pub`,
      extraConfig: ['PrintMotd no', 'PrintLastLog no', 'MaxSessions 2000', 'MaxStartups 2000'],
    });
    cleanups.push(() => node.stop());
    await adm.nodes.add({ name: 'node1', addr: `127.0.0.1:${node.port}`, labels: { env: 'bench' } }, 'bench');

    // One CLI login (through A): its certificate is good on every gateway (one shared CA).
    const home = path.join(dir, 'home');
    const cliEnv = { ...env, GATEHOUSE_HOME: home };
    await new Promise((resolve, reject) => {
      const c = spawn(
        process.execPath,
        [
          BIN,
          'login',
          '--proxy',
          gws[0].proxy,
          '--user',
          'bench',
          '--ca-pin',
          adm.caPin(),
          '--password-stdin',
        ],
        { env: cliEnv, stdio: ['pipe', 'ignore', 'inherit'] },
      );
      c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`gatehouse login exited ${code}`))));
      c.stdin.end(`${PASSWORD}\n`);
    });
    const keyDir = path.join(home, 'keys', gws[0].proxy.replace(':', '_'), 'bench');
    const cfg = path.join(dir, 'ssh_config');
    await writeFile(
      cfg,
      [
        'Host *',
        `  IdentityFile ${path.join(keyDir, 'id_ed25519')}`,
        `  CertificateFile ${path.join(keyDir, 'id_ed25519-cert.pub')}`,
        '  IdentitiesOnly yes',
        // Gateways and node present host certificates of the cluster; the bench does not check them.
        '  StrictHostKeyChecking no',
        '  UserKnownHostsFile /dev/null',
        '  BatchMode yes',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const sshArgs = (g, extra) => ['-F', cfg, ...extra, '-J', `bench@${g.proxy}`, `${login}@node1`];

    // Logins: the API login (password check, certificates issued) from in-process clients.
    const { caPem } = await fetchPinnedCa({ ...parseHostPort(gws[0].proxy), pin: adm.caPin() });
    const { generateKeyPairSync } = await import('node:crypto');
    const tlsKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    const clients = gws.map((g) => new GatehouseClient({ proxy: g.proxy, caPem }));
    cleanups.push(async () => {
      for (const c of clients) c.close();
    });
    const doLogin = (n) => (w, i) =>
      clients[(w + i) % n].login({ user: 'bench', password: PASSWORD, tls_public_key: tlsKey });
    const doSsh = (n) => (w, i) => runQuiet('ssh', sshArgs(gws[(w + i) % n], []).concat('true'), cliEnv);
    // Warm up every gateway on both paths.
    for (let n = 0; n < 3; n++) {
      await doLogin(3)(n, 0);
      await doSsh(3)(n, 0);
    }
    const results = { logins: [[], [], []], ssh: [[], [], []] };
    for (let r = 0; r < rounds; r++) {
      for (const n of roundOrder([1, 2, 3], r)) {
        const l = await rate(seconds, concurrency, doLogin(n));
        results.logins[n - 1].push(l.perSec);
        const s = await rate(seconds, concurrency, doSsh(n));
        results.ssh[n - 1].push(s.perSec);
        process.stdout.write(
          `  round ${r + 1}, ${n} gateway(s): ${l.perSec.toFixed(1)} logins/s${l.failed ? ` (${l.failed} failed)` : ''}, ${s.perSec.toFixed(1)} ssh setups/s${s.failed ? ` (${s.failed} failed)` : ''}\n`,
        );
      }
    }

    // Lock propagation: one idle shell on each of B and C; lock through the admin instance; time to each end.
    const delays = [];
    for (let i = 0; i < locks; i++) {
      const sessions = gws.slice(1).map((g) => {
        const child = spawn('ssh', sshArgs(g, ['-tt']).concat('echo ready-$((1+1)); exec sleep 600'), {
          env: cliEnv,
          stdio: ['pipe', 'pipe', 'ignore'],
        });
        let out = '';
        const ready = new Promise((resolve, reject) => {
          child.stdout.on('data', (d) => {
            out += d;
            if (out.includes('ready-2')) resolve();
          });
          child.once('close', (code) => reject(new Error(`session ended before it was ready (${code})`)));
        });
        const closed = new Promise((resolve) => child.once('close', () => resolve(performance.now())));
        return { child, ready, closed };
      });
      await Promise.all(sessions.map((s) => s.ready));
      const t0 = performance.now();
      await adm.admin.lockUser('bench', { message: 'bench' });
      const ends = await Promise.race([
        Promise.all(sessions.map((s) => s.closed)),
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('sessions still live 10 s after the lock')), 10_000),
        ),
      ]).catch((e) => {
        for (const s of sessions) s.child.kill('SIGKILL');
        throw e;
      });
      for (const t of ends) delays.push(t - t0);
      await adm.admin.unlockUser('bench');
    }

    const w = 14;
    process.stdout.write(
      `\nSeveral gateways on one PostgreSQL, ${concurrency} concurrent clients, ${seconds} s per figure, median of ${rounds} round(s):\n\n`,
    );
    process.stdout.write(
      `${'gateways'.padEnd(w)}${'logins/s'.padStart(10)}${'x 1'.padStart(7)}${'ssh setups/s'.padStart(14)}${'x 1'.padStart(7)}\n`,
    );
    const l1 = median(results.logins[0]);
    const s1 = median(results.ssh[0]);
    for (let n = 1; n <= 3; n++) {
      const l = median(results.logins[n - 1]);
      const s = median(results.ssh[n - 1]);
      process.stdout.write(
        `${String(n).padEnd(w)}${l.toFixed(1).padStart(10)}${(l / l1).toFixed(2).padStart(7)}${s.toFixed(1).padStart(14)}${(s / s1).toFixed(2).padStart(7)}\n`,
      );
    }
    process.stdout.write(
      `\nLock propagation (users lock through another instance -> ssh client sees its session end on B and C), ${delays.length} sessions:\n` +
        `  p50 ${percentile(delays, 50).toFixed(0)} ms, p99 ${percentile(delays, 99).toFixed(0)} ms, max ${Math.max(...delays).toFixed(0)} ms (goal p99 <= 1000 ms)\n` +
        `  (clients, sshd, 3 gateways and PostgreSQL share this machine's ${os.cpus().length} cores)\n`,
    );
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
