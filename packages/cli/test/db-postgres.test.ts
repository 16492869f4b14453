import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';

/**
 * `gatehouse db ...` (the BUILT binary; run `npx tsc -b` first) against a
 * real `gatehouse start` and a real PostgreSQL trusting its db CA, with the
 * real psql reading the service file `db login` writes.
 */
const BIN = fileURLToPath(new URL('../bin/gatehouse.js', import.meta.url));
const PASSWORD = 'correct horse battery staple';
const sh = promisify(execFile);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function gatehouse(args: string[], env: NodeJS.ProcessEnv, input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const e: NodeJS.ProcessEnv = { ...process.env, ...env };
    delete e.GATEHOUSE_DATA_DIR;
    const child = spawn(process.execPath, [BIN, ...args], { env: e, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const mode = (p: string) => statSync(p).mode & 0o777;

describe('gatehouse db (postgres) with the real psql', () => {
  let root: string;
  let config: string;
  let daemon: ChildProcess;
  let daemonErr = '';
  let proxy: string;
  let pin: string;
  let db: Postgres;
  let serviceFile: string;
  let env: NodeJS.ProcessEnv;
  let certFile = '';
  const admin = (args: string[], input?: string) =>
    gatehouse(['--config', config, ...args], { GATEHOUSE_HOME: join(root, 'home-admin') }, input);

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'gh-clidb-'));
    config = join(root, 'gatehouse.yaml');
    writeFileSync(
      config,
      `cluster_name: dbtest\ndata_dir: ${join(root, 'data')}\nlisten: 127.0.0.1:0\nauth:\n  second_factor: "off"\n  login_rate_per_minute: 1000\n`,
    );
    daemon = spawn(process.execPath, [BIN, 'start', '--config', config], {
      env: { ...process.env, GATEHOUSE_HOME: join(root, 'home-daemon') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    daemon.stderr!.on('data', (d) => {
      daemonErr += d;
    });
    let out = '';
    const m = await new Promise<RegExpExecArray>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`gatehouse start printed no invite:\n${out}\n${daemonErr}`)),
        30_000,
      );
      daemon.on('exit', (code) =>
        reject(new Error(`gatehouse start exited with ${code}:\n${out}\n${daemonErr}`)),
      );
      daemon.stdout!.on('data', (d) => {
        out += d;
        const found = /gatehouse accept-invite --proxy (\S+) --ca-pin (sha256:[0-9a-f]{64})/.exec(out);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      });
    });
    proxy = m[1]!;
    pin = m[2]!;
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
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
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
