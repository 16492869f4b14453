import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Mariadb, opensslSubject, startMariadb } from '../../adapter-mysql/test/peers.js';
import { type Daemon, PASSWORD, run, startDaemon, startProxyDb } from './harness.js';

/**
 * `gatehouse db login/connect/logout` and `gatehouse proxy db` for MySQL (the
 * BUILT binary; run `npx tsc -b` first) against a real `gatehouse start` with
 * a MySQL listener and a real MariaDB trusting its db CA, driven with the
 * real mariadb client reading the ~/.my.cnf group `db login` writes.
 */
const sh = promisify(execFile);

/** `java -cp DRIVER.jar Jdbc.java URL SQL` prints the first row (source-file mode needs the JDK). */
const JDBC_MAIN = fileURLToPath(new URL('./jdbc/Jdbc.java', import.meta.url));

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
  let jdbcUrl = '';
  const otherGroups =
    '# my own settings\n[client]\ndefault-character-set=utf8mb4\n\n[client_legacy]\nhost=db.example.com\n';
  const admin = (args: string[], input?: string) =>
    gatehouse(['--config', config, ...args], { GATEHOUSE_HOME: join(root, 'home-admin') }, input);
  const mariadb = (args: string[]) => sh('mariadb', args, { env: { PATH: process.env.PATH, HOME: root } });

  beforeAll(async () => {
    // Port 0, as an operator who wants no fixed port writes it: `db login`
    // must learn the bound port (it used to be told 127.0.0.1:0 and fail).
    daemon = await startDaemon({ cluster: 'mytest', extraConfig: 'mysql_listen: 127.0.0.1:0\n' });
    ({ root, configFile: config, proxy, pin } = daemon);
    mysqlPort = Number(/mysql:\s+127\.0\.0\.1:(\d+)/.exec(daemon.out())?.[1]);
    expect(mysqlPort).toBeGreaterThan(0);
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
      'CREATE DATABASE shop; CREATE DATABASE shop_archive; CREATE DATABASE payroll; ' +
        `CREATE USER alice@'%' REQUIRE SUBJECT '${subject}'; GRANT ALL ON shop.* TO alice@'%'; ` +
        `GRANT ALL ON shop_archive.* TO alice@'%'; GRANT ALL ON payroll.* TO alice@'%'`,
    );
    const roleFile = join(root, 'my-dev.yaml');
    writeFileSync(
      roleFile,
      'kind: role\nname: my-dev\nallow:\n  db_labels: { engine: mariadb }\n  db_users: [alice]\n  db_names: [shop, shop_archive]\n',
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

  it('db login writes [client_shop] (every tool) and [mysql_shop] (the shells: database) to ~/.my.cnf (0600), keeping the other groups', async () => {
    const r = await gatehouse(['db', 'login', 'shop', '--db-name', 'shop'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged in to database shop as alice (database shop)');
    expect(r.stdout).toContain('mariadb --defaults-group-suffix=_shop');
    expect(r.stdout).toContain('mariadb --defaults-group-suffix=_shop shop_archive');
    const text = readFileSync(myCnf, 'utf8');
    expect(text.startsWith(otherGroups)).toBe(true);
    const group = (name: string) =>
      Object.fromEntries(
        (new RegExp(`\\[${name}\\]\\n([^[]*)`).exec(text)?.[1] ?? '')
          .trim()
          .split('\n')
          .map((l) => l.split('=') as [string, string]),
      );
    const values = group('client_shop');
    expect(values).toEqual({
      host: '127.0.0.1',
      port: String(mysqlPort),
      protocol: 'TCP',
      user: 'alice',
      'ssl-ca': expect.any(String),
      'ssl-cert': expect.any(String),
      'ssl-key': expect.any(String),
      'ssl-verify-server-cert': '1',
    });
    expect(group('mysql_shop')).toEqual({ database: 'shop' });
    for (const k of ['ssl-ca', 'ssl-cert', 'ssl-key']) expect(mode(values[k] as string), k).toBe(0o600);
    expect(mode(myCnf)).toBe(0o600);
    jdbcUrl = /^ {2}(jdbc:mariadb:\/\/\S+)$/m.exec(r.stdout)?.[1] ?? '';
    const dir = dirname(values['ssl-cert'] as string);
    expect(jdbcUrl).toBe(
      `jdbc:mariadb://127.0.0.1:${mysqlPort}/shop?user=alice&sslMode=verify-full&useSsl=true` +
        `&serverSslCert=${dir}/ca.pem&keyStore=${dir}/tls.p12&keyStoreType=PKCS12&keyStorePassword=`,
    );
  });

  it('mariadb-admin reads the group without "unknown variable database=shop" (was: database in [client_shop])', async () => {
    const r = await sh('mariadb-admin', ['--defaults-group-suffix=_shop', 'ping'], {
      env: { PATH: process.env.PATH, HOME: root },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('mysqld is alive');
  });

  it('mariadb-dump dumps through the gateway without warnings about unknown variables', async () => {
    await mariadb([
      '--defaults-group-suffix=_shop',
      '-e',
      "CREATE TABLE items (id INT PRIMARY KEY, name TEXT); INSERT INTO items VALUES (1, 'one')",
    ]);
    const r = await sh(
      'mariadb-dump',
      ['--defaults-group-suffix=_shop', '--skip-lock-tables', 'shop', 'items'],
      {
        env: { PATH: process.env.PATH, HOME: root },
      },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain("INSERT INTO `items` VALUES\n(1,'one');");
  });

  it('one db login covers every database name the role allows (USE, a named database), and refuses others naming the allowed ones', async () => {
    const used = await mariadb([
      '--defaults-group-suffix=_shop',
      '-N',
      '-B',
      '-e',
      'USE shop_archive; SELECT DATABASE()',
    ]);
    expect(used.stdout.trim()).toBe('shop_archive');
    const named = await mariadb([
      '--defaults-group-suffix=_shop',
      '-N',
      '-B',
      '-e',
      'SELECT DATABASE()',
      'shop_archive',
    ]);
    expect(named.stdout.trim()).toBe('shop_archive');
    const denied = await mariadb([
      '--defaults-group-suffix=_shop',
      '-N',
      '-B',
      '-e',
      'SELECT 1',
      'payroll',
    ]).catch((e: { stderr: string }) => e);
    expect(denied.stderr).toContain('ERROR 1044');
    expect(denied.stderr).toContain('(allowed names: shop, shop_archive)');
  });

  it('MariaDB Connector/J connects with the JDBC URL db login printed (PKCS#12 keystore, empty password)', async () => {
    const r = await sh(
      'java',
      [
        '-cp',
        '/usr/share/java/mariadb-java-client.jar',
        JDBC_MAIN,
        jdbcUrl,
        'SELECT 1, CURRENT_USER(), DATABASE()',
      ],
      { env: { PATH: process.env.PATH, HOME: root } },
    );
    expect(r.stdout.trim()).toBe('1\talice@%\tshop');
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
    const tunnel = await startProxyDb('shop', env);
    try {
      expect(tunnel.out).toContain(`mariadb -h127.0.0.1 -P${tunnel.port} -ualice -Dshop --skip-ssl`);
      const r = await mariadb([
        '--no-defaults',
        '-h127.0.0.1',
        `-P${tunnel.port}`,
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
      await tunnel.stop();
    }
  });

  it('db logout removes both groups and nothing else', async () => {
    const r = await gatehouse(['db', 'logout', 'shop'], env);
    expect(r.code).toBe(0);
    expect(readFileSync(myCnf, 'utf8')).toBe(otherGroups);
  });
});
