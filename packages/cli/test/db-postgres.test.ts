import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * `gatehouse db ...` (the BUILT binary; run `npx tsc -b` first) against a
 * real `gatehouse start` and a real PostgreSQL trusting its db CA, with the
 * real psql reading the service file `db login` writes.
 */
const sh = promisify(execFile);

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
  const admin = (args: string[], input?: string) =>
    gatehouse(['--config', config, ...args], { GATEHOUSE_HOME: join(root, 'home-admin') }, input);

  beforeAll(async () => {
    daemon = await startDaemon({ cluster: 'dbtest' });
    ({ root, configFile: config, proxy, pin } = daemon);
    const dbCa = await admin(['ca', 'export', '--format', 'postgres']);
    expect(dbCa.stderr).toBe('');
    db = await startPostgres({ dbCaPem: dbCa.stdout, roles: ['alice'], databases: ['app'] });
    const caFile = join(root, 'pg-server-ca.pem');
    writeFileSync(caFile, db.serverCaPem);
    const roleFile = join(root, 'pg-dev.yaml');
    writeFileSync(
      roleFile,
      'kind: role\nname: pg-dev\nallow:\n  db_labels: { engine: postgres }\n  db_users: [alice]\n  db_names: [app]\n',
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
        allowed: { db_users: ['alice'], db_names: ['app'] },
      }),
    ]);
  });

  it('db login writes private cert files and a service section, keeping other sections', async () => {
    const r = await gatehouse(['db', 'login', 'orders'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Logged in to database orders as alice (database app)');
    expect(r.stdout).toContain(`PGSERVICEFILE=${serviceFile} psql "service=orders"`);
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
