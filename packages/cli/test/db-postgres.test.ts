import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { type Daemon, PASSWORD, run, startDaemon, startProxyDb } from './harness.js';

/**
 * `gatehouse db ...` (the BUILT binary; run `npx tsc -b` first) against a
 * real `gatehouse start` and a real PostgreSQL trusting its db CA, with the
 * real psql reading the service file `db login` writes.
 */
const sh = promisify(execFile);

/** `java -cp DRIVER.jar Jdbc.java URL SQL` prints the first row (source-file mode needs the JDK). */
const JDBC_MAIN = fileURLToPath(new URL('./jdbc/Jdbc.java', import.meta.url));

const gatehouse = (args: string[], env: NodeJS.ProcessEnv, input = '') => run(args, { env, input });

const mode = (p: string) => statSync(p).mode & 0o777;

describe('gatehouse db (postgres) with the real psql', () => {
  let root: string;
  let config: string;
  let daemon: Daemon;
  let proxy: string;
  let pin: string;
  let db: Postgres;
  let serviceFile: string;
  let env: NodeJS.ProcessEnv;
  let certFile = '';
  let jdbcUrl = '';
  let uri = '';
  const admin = (args: string[], input?: string) =>
    gatehouse(['--config', config, ...args], { GATEHOUSE_HOME: join(root, 'home-admin') }, input);

  beforeAll(async () => {
    daemon = await startDaemon({ cluster: 'dbtest' });
    ({ root, configFile: config, proxy, pin } = daemon);
    const dbCa = await admin(['ca', 'export', '--format', 'postgres']);
    expect(dbCa.stderr).toBe('');
    db = await startPostgres({
      dbCaPem: dbCa.stdout,
      roles: ['alice'],
      databases: ['app', 'app_copy', 'payroll'],
    });
    // alice owns them, so she may create tables in their public schema (PostgreSQL 15).
    await db.sql('ALTER DATABASE app OWNER TO alice; ALTER DATABASE app_copy OWNER TO alice');
    const caFile = join(root, 'pg-server-ca.pem');
    writeFileSync(caFile, db.serverCaPem);
    const roleFile = join(root, 'pg-dev.yaml');
    writeFileSync(
      roleFile,
      'kind: role\nname: pg-dev\nallow:\n  db_labels: { engine: postgres }\n  db_users: [alice]\n  db_names: [app, app_copy]\n',
    );
    for (const r of [
      await admin(['roles', 'create', '-f', roleFile]),
      await admin(['users', 'add', 'alice', '--roles', 'pg-dev', '--password-stdin'], `${PASSWORD}\n`),
      await admin([
        'db',
        'add',
        'orders',
        '--protocol',
        'postgres',
        '--uri',
        `localhost:${db.port}`,
        '--ca-file',
        caFile,
        '--label',
        'engine=postgres',
      ]),
    ]) {
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
    serviceFile = join(root, 'pg_service.conf');
    writeFileSync(serviceFile, '# my services\n[other]\nhost=db.example.com\nport=5433\n');
    env = { GATEHOUSE_HOME: join(root, 'home-alice'), PGSERVICEFILE: serviceFile, HOME: root };
    const login = await gatehouse(
      ['login', '--proxy', proxy, '--ca-pin', pin, '--user', 'alice', '--password-stdin'],
      env,
      `${PASSWORD}\n`,
    );
    expect(login.stderr).toBe('');
    expect(login.code).toBe(0);
  });

  afterAll(async () => {
    if (daemon) expect(await daemon.stop(), daemon.err()).toBe(0);
    await db?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('db ls --json shows what alice may reach', async () => {
    const r = await gatehouse(['db', 'ls', '--json'], env);
    expect(r.stderr).toBe('');
    const list = JSON.parse(r.stdout) as {
      name: string;
      protocol: string;
      allowed?: { db_users: string[]; db_names: string[] };
    }[];
    expect(list).toEqual([
      expect.objectContaining({
        name: 'orders',
        protocol: 'postgres',
        allowed: { db_users: ['alice'], db_names: ['app', 'app_copy'] },
      }),
    ]);
  });

  it('db login writes private cert files and a service section, keeping other sections', async () => {
    const r = await gatehouse(['db', 'login', 'orders', '--db-name', 'app'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged in to database orders as alice (database app)');
    expect(r.stdout).toContain('Database names your roles allow: app, app_copy');
    expect(r.stdout).toContain(`PGSERVICEFILE=${serviceFile} psql "service=orders"`);
    expect(r.stdout).toContain(`PGSERVICEFILE=${serviceFile} psql "service=orders dbname=app_copy"`);
    const text = readFileSync(serviceFile, 'utf8');
    expect(text).toContain('# my services\n[other]\nhost=db.example.com\nport=5433\n');
    const section = /\[orders\]\n([\s\S]*)$/.exec(text)?.[1] ?? '';
    const values = Object.fromEntries(
      section
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
    expect(values).toMatchObject({
      host: '127.0.0.1',
      port: proxy.split(':')[1],
      sslmode: 'verify-full',
      user: 'alice',
      dbname: 'app',
    });
    for (const k of ['sslcert', 'sslkey', 'sslrootcert']) expect(mode(values[k]!), k).toBe(0o600);
    certFile = values.sslcert!;
    expect(mode(serviceFile)).toBe(0o600);
    // The key again as PKCS#8 DER (pgjdbc) and a PKCS#12 keystore (Java), private like the PEM.
    const dir = dirname(certFile);
    for (const f of ['tls.pk8', 'tls.p12']) expect(mode(join(dir, f)), f).toBe(0o600);
    const jdbc = /^ {2}(jdbc:postgresql:\/\/\S+)$/m.exec(r.stdout)?.[1];
    expect(jdbc).toBe(
      `jdbc:postgresql://127.0.0.1:${proxy.split(':')[1]}/app?user=alice&sslmode=verify-full` +
        `&sslrootcert=${dir}/ca.pem&sslcert=${dir}/tls.crt&sslkey=${dir}/tls.pk8`,
    );
  });

  it('db login --json says what it wrote: files, JDBC URL, connection URI', async () => {
    const r = await gatehouse(['db', 'login', 'orders', '--db-name', 'app', '--json'], env);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout) as Record<string, unknown> & { files: Record<string, string> };
    const dir = dirname(certFile);
    expect(out).toMatchObject({
      name: 'orders',
      protocol: 'postgres',
      db_user: 'alice',
      db_name: 'app',
      allowed_db_names: ['app', 'app_copy'],
      config_file: serviceFile,
      keystore_password: '',
      files: {
        cert: `${dir}/tls.crt`,
        key: `${dir}/tls.key`,
        ca: `${dir}/ca.pem`,
        pk8: `${dir}/tls.pk8`,
        p12: `${dir}/tls.p12`,
      },
    });
    expect(out.jdbc_url).toMatch(
      /^jdbc:postgresql:\/\/127\.0\.0\.1:\d+\/app\?user=alice&sslmode=verify-full&/,
    );
    expect(out.uri).toMatch(/^postgresql:\/\/alice@127\.0\.0\.1:\d+\/app\?sslmode=verify-full&/);
    jdbcUrl = out.jdbc_url as string;
    uri = out.uri as string;
    // openssl reads the keystore with the empty password (its MAC checks out) and finds the key and the certificate.
    const p12 = await sh('openssl', ['pkcs12', '-in', out.files.p12!, '-passin', 'pass:', '-nodes']);
    expect(p12.stdout).toContain('-----BEGIN PRIVATE KEY-----');
    const certs = p12.stdout.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    expect(certs.map((c) => new X509Certificate(c).fingerprint256)).toEqual([
      new X509Certificate(readFileSync(certFile)).fingerprint256,
    ]);
  });

  it('psql "service=orders" connects through Gatehouse', async () => {
    const r = await sh(
      'psql',
      ['-X', '-At', 'service=orders', '-c', 'select current_user, current_database()'],
      {
        env: { PATH: process.env.PATH, PGSERVICEFILE: serviceFile, HOME: root },
      },
    );
    expect(r.stdout.trim()).toBe('alice|app');
  });

  it('db connect runs psql with the service', async () => {
    const r = await gatehouse(['db', 'connect', 'orders', '--', '-X', '-At', '-c', 'select 40 + 2'], env);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('42');
  });

  it('db env prints PG* variables psql uses', async () => {
    const r = await gatehouse(['db', 'env', 'orders'], env);
    expect(r.stdout).toMatch(/^export PGHOST='127\.0\.0\.1'$/m);
    expect(r.stdout).toMatch(/^export PGSSLMODE='verify-full'$/m);
    const script = join(root, 'env.sh');
    writeFileSync(script, r.stdout);
    const p = await sh('bash', ['-c', `. ${script} && psql -X -At -c 'select current_database()'`], {
      env: { PATH: process.env.PATH, HOME: root },
    });
    expect(p.stdout.trim()).toBe('app');
  });

  it('one db login covers every database name the role allows: pg_dump app, pg_restore into app_copy (was: certificate is scoped to db "orders")', async () => {
    const pgEnv = { PATH: process.env.PATH, PGSERVICEFILE: serviceFile, HOME: root };
    await sh(
      'psql',
      [
        '-X',
        '-v',
        'ON_ERROR_STOP=1',
        'service=orders',
        '-c',
        "create table items(id int, name text); insert into items values (1, 'one'), (2, 'two')",
      ],
      { env: pgEnv },
    );
    const dump = join(root, 'app.dump');
    await sh('pg_dump', ['-Fc', '-f', dump, 'service=orders'], { env: pgEnv });
    const restore = await sh('pg_restore', ['--no-owner', '-d', 'service=orders dbname=app_copy', dump], {
      env: pgEnv,
    });
    expect(restore.stderr).toBe('');
    const r = await sh(
      'psql',
      [
        '-X',
        '-At',
        'service=orders dbname=app_copy',
        '-c',
        "select current_database(), string_agg(name, ',' order by id) from items",
      ],
      { env: pgEnv },
    );
    expect(r.stdout.trim()).toBe('app_copy|one,two');
  });

  it('a database name the role does not allow is refused with FATAL naming the allowed names and what to ask for', async () => {
    const r = await sh('psql', ['-X', '-At', 'service=orders dbname=payroll', '-c', 'select 1'], {
      env: { PATH: process.env.PATH, PGSERVICEFILE: serviceFile, HOME: root },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(r).toMatchObject({ code: 2 });
    expect(r.stderr).toContain(
      'FATAL:  access denied: no role allows database name "payroll" as user "alice" on database "orders" (allowed names: app, app_copy)',
    );
    expect(r.stderr).toContain(
      'HINT:  connect to one of the allowed database names, or ask an admin for a role with db_names: ["payroll"] on database "orders"',
    );
  });

  it('pgjdbc connects with the JDBC URL db login printed (PKCS#8 DER key) and runs SELECT 1', async () => {
    const r = await sh(
      'java',
      [
        '-cp',
        '/usr/share/java/postgresql.jar',
        JDBC_MAIN,
        jdbcUrl,
        'select 1, current_user, current_database()',
      ],
      { env: { PATH: process.env.PATH, HOME: root } },
    );
    expect(r.stdout.trim()).toBe('1\talice\tapp');
  });

  it('psycopg2 and node-postgres connect with the connection URI db login printed', async () => {
    // Debian's python3-psycopg2, not a pyenv python that may come first on PATH.
    const py = await sh('/usr/bin/python3', [
      '-c',
      'import psycopg2,sys; c=psycopg2.connect(sys.argv[1]); k=c.cursor(); k.execute("select current_user, current_database()"); print(*k.fetchone(), sep="|")',
      uri,
    ]);
    expect(py.stdout.trim()).toBe('alice|app');
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    try {
      const res = await client.query('select current_user as u, current_database() as d');
      expect(res.rows).toEqual([{ u: 'alice', d: 'app' }]);
    } finally {
      await client.end();
    }
  });

  it('proxy db gives psql a local tunnel without certificates (was: no local tunnel for postgres databases)', async () => {
    const tunnel = await startProxyDb('orders', env);
    try {
      const suggested = `psql "host=127.0.0.1 port=${tunnel.port} user=alice dbname=app sslmode=disable"`;
      expect(tunnel.out).toContain(suggested);
      const clean = { PATH: process.env.PATH, HOME: root };
      for (const sslmode of ['disable', 'prefer']) {
        const r = await sh(
          'psql',
          [
            '-X',
            '-At',
            `host=127.0.0.1 port=${tunnel.port} user=alice dbname=app_copy sslmode=${sslmode}`,
            '-c',
            'select current_user, current_database(), count(*) from items',
          ],
          { env: clean },
        );
        expect(r.stdout.trim(), sslmode).toBe('alice|app_copy|2');
      }
      // The identity is still checked at the proxy: a name the role does not allow is refused through the tunnel too.
      const denied = await sh(
        'psql',
        [
          '-X',
          '-At',
          `host=127.0.0.1 port=${tunnel.port} user=alice dbname=payroll sslmode=disable`,
          '-c',
          'select 1',
        ],
        { env: clean },
      ).catch((e: { stderr: string }) => e);
      expect(denied.stderr).toContain('(allowed names: app, app_copy)');
    } finally {
      await tunnel.stop();
    }
  });

  it('db logout removes the section and the files', async () => {
    expect(existsSync(certFile)).toBe(true);
    const r = await gatehouse(['db', 'logout', 'orders'], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged out of database orders');
    expect(readFileSync(serviceFile, 'utf8')).toBe(
      '# my services\n[other]\nhost=db.example.com\nport=5433\n',
    );
    const again = await gatehouse(['db', 'env', 'orders'], env);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('hint: run gatehouse db login orders');
    expect(existsSync(certFile)).toBe(false);
  });

  it('db rm unregisters the database (admin)', async () => {
    const r = await admin(['db', 'rm', 'orders']);
    expect(r.stdout).toContain('Database orders removed.');
    const ls = await gatehouse(['db', 'ls', '--json'], env);
    expect(JSON.parse(ls.stdout)).toEqual([]);
  });
});
