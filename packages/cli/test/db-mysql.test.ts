import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@gatehouse/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Mariadb, opensslSubject, startMariadb } from '../../adapter-mysql/test/peers.js';
import { BIN, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * `gatehouse db login/connect/logout` and `gatehouse proxy db` for MySQL (the
 * BUILT binary; run `npx tsc -b` first) against a real `gatehouse start` with
 * a MySQL listener and a real MariaDB trusting its db CA, driven with the
 * real mariadb client reading the ~/.my.cnf group `db login` writes.
 */
const sh = promisify(execFile);

const gatehouse = (args: string[], env: NodeJS.ProcessEnv, input = '') => run(args, { env, input });

const mode = (p: string) => statSync(p).mode & 0o777;

describe('gatehouse db + proxy db (mysql) with the real mariadb client', () => {
  let root: string;
  let config: string;
  let daemon: Daemon;
  let proxy: string;
  let pin: string;
  let mysqlPort: number;
  let db: Mariadb;
  let myCnf: string;
  let env: NodeJS.ProcessEnv;
  const otherGroups =
    '# my own settings\n[client]\ndefault-character-set=utf8mb4\n\n[client_legacy]\nhost=db.example.com\n';
  const admin = (args: string[], input?: string) =>
    gatehouse(['--config', config, ...args], { GATEHOUSE_HOME: join(root, 'home-admin') }, input);
  const mariadb = (args: string[]) => sh('mariadb', args, { env: { PATH: process.env.PATH, HOME: root } });

  beforeAll(async () => {
    mysqlPort = await freePort();
    daemon = await startDaemon({ cluster: 'mytest', extraConfig: `mysql_listen: 127.0.0.1:${mysqlPort}\n` });
    ({ root, configFile: config, proxy, pin } = daemon);
    expect(daemon.out()).toContain('mysql:');
    const dbCa = await admin(['ca', 'export', '--format', 'mariadb']);
    expect(dbCa.stderr).toBe('');
    db = await startMariadb({ clientCaPem: dbCa.stdout });
    const caFile = join(root, 'mariadb-server-ca.pem');
    writeFileSync(caFile, db.serverCaPem);
    // The subject the db CA gives "alice" in this cluster, as MariaDB compares it.
    const probeDir = mkdtempSync(join(root, 'probe-'));
    await sh('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(probeDir, 'k'),
      '-out',
      join(probeDir, 'c'),
      '-subj',
      '/CN=alice/O=mytest',
      '-days',
      '1',
    ]);
    const subject = opensslSubject(readFileSync(join(probeDir, 'c'), 'utf8'));
    expect(subject).toBe('/CN=alice/O=mytest');
    await db.sql(
      `CREATE DATABASE shop; CREATE USER alice@'%' REQUIRE SUBJECT '${subject}'; GRANT ALL ON shop.* TO alice@'%'`,
    );
    const roleFile = join(root, 'my-dev.yaml');
    writeFileSync(
      roleFile,
      'kind: role\nname: my-dev\nallow:\n  db_labels: { engine: mariadb }\n  db_users: [alice]\n  db_names: [shop]\n',
    );
    for (const r of [
      await admin(['roles', 'create', '-f', roleFile]),
      await admin(['users', 'add', 'alice', '--roles', 'my-dev', '--password-stdin'], `${PASSWORD}\n`),
      await admin([
        'db',
        'add',
        'shop',
        '--protocol',
        'mysql',
        '--uri',
        `localhost:${db.port}`,
        '--ca-file',
        caFile,
        '--label',
        'engine=mariadb',
      ]),
    ]) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    myCnf = join(root, '.my.cnf');
    writeFileSync(myCnf, otherGroups);
    env = { GATEHOUSE_HOME: join(root, 'home-alice'), HOME: root };
    const login = await gatehouse(
      ['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'alice', '--password-stdin'],
      env,
      `${PASSWORD}\n`,
    );
    expect(login.stderr).toBe('');
    expect(login.code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    await db?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('db login writes a [client_shop] group to ~/.my.cnf (0600), keeping the other groups', async () => {
    const r = await gatehouse(['db', 'login', 'shop'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged in to database shop as alice (database shop)');
    expect(r.stdout).toContain('mariadb --defaults-group-suffix=_shop');
    const text = readFileSync(myCnf, 'utf8');
    expect(text.startsWith(otherGroups)).toBe(true);
    const group = /\[client_shop\]\n([\s\S]*)$/.exec(text)?.[1] ?? '';
    const values = Object.fromEntries(
      group
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    expect(values).toMatchObject({
      host: '127.0.0.1',
      port: String(mysqlPort),
      protocol: 'TCP',
      user: 'alice',
      database: 'shop',
      'ssl-verify-server-cert': '1',
    });
    for (const k of ['ssl-ca', 'ssl-cert', 'ssl-key']) expect(mode(values[k] as string), k).toBe(0o600);
    expect(mode(myCnf)).toBe(0o600);
  });

  it('mariadb --defaults-group-suffix=_shop connects through the MySQL listener', async () => {
    const r = await mariadb([
      '--defaults-group-suffix=_shop',
      '-N',
      '-B',
      '-e',
      'SELECT CURRENT_USER(), DATABASE()',
    ]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('alice@%\tshop');
  });

  it('db connect runs the mariadb client with the group', async () => {
    const r = await gatehouse(['db', 'connect', 'shop', '--', '-N', '-B', '-e', 'SELECT 40 + 2'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('42');
  });

  it('proxy db opens a local tunnel that carries the identity (ALPN gatehouse-mysql)', async () => {
    const child = spawn(process.execPath, [BIN, 'proxy', 'db', 'shop', '--port', '0'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`proxy db printed no address: ${out}`)), 20_000);
        child.stdout.on('data', (d) => {
          out += d;
          const found = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
          if (found) {
            clearTimeout(timer);
            resolve(Number(found[1]));
          }
        });
        child.on('exit', (code) => reject(new Error(`proxy db exited with ${code}: ${out}`)));
      });
      expect(out).toContain(`mariadb -h127.0.0.1 -P${port} -ualice -Dshop --skip-ssl`);
      const r = await mariadb([
        '--no-defaults',
        '-h127.0.0.1',
        `-P${port}`,
        '-ualice',
        '-Dshop',
        '--skip-ssl',
        '-N',
        '-B',
        '-e',
        'SELECT CURRENT_USER(), DATABASE()',
      ]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('alice@%\tshop');
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('db logout removes the group and nothing else', async () => {
    const r = await gatehouse(['db', 'logout', 'shop'], env);
    expect(r.code).toBe(0);
    expect(readFileSync(myCnf, 'utf8')).toBe(otherGroups);
  });
});
