import { execFile, execFileSync } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A free loopback port (bound and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
  });
}
export const PG_BIN = '/usr/lib/postgresql/15/bin';

/** A throwaway CA plus a server certificate for localhost/127.0.0.1, made with the real openssl. */
export function makeServerCa(
  dir: string,
  cn = 'localhost',
): { caPem: string; caFile: string; certFile: string; keyFile: string } {
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const certFile = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ossl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caFile,
    '-subj',
    '/CN=pg test CA',
    '-days',
    '2',
  ]);
  ossl([
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    csr,
    '-subj',
    `/CN=${cn}`,
  ]);
  writeFileSync(ext, `subjectAltName=DNS:${cn},IP:127.0.0.1\n`);
  ossl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    caFile,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    certFile,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return { caPem: execFileSync('cat', [caFile]).toString(), caFile, certFile, keyFile };
}

export interface Postgres {
  port: number;
  dir: string;
  /** PEM of the CA that signed the server certificate (register the database with it). */
  serverCaPem: string;
  serverCaFile: string;
  /** Runs SQL as the superuser over the Unix socket (no TLS, no Gatehouse). */
  sql(text: string, db?: string): Promise<string>;
  /** Stops the server (fast shutdown) but keeps its data dir, for outage tests; `start` brings it back on the same port. */
  pause(): Promise<void>;
  start(): Promise<void>;
  /**
   * Replaces what `ssl_ca_file` holds (the Gatehouse db CA certificates, e.g.
   * both during a CA rotation) and reloads the server, as an operator does.
   */
  setDbCa(pem: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL 15 (shared/PEERS.md): ssl on with a server cert for
 * localhost from a test CA, `ssl_ca_file` = the Gatehouse db CA, and
 * `hostssl all all 127.0.0.1/32 cert`, so only db-CA client certs whose CN is
 * the role get in.
 */
export async function startPostgres(opts: {
  /** The CA client certificates must chain to (ssl_ca_file); default: the test server CA. */
  dbCaPem?: string;
  roles?: string[];
  databases?: string[];
  /** pg_hba.conf lines placed before the default ones (first match wins), e.g. password auth for one role. */
  hba?: string[];
  /** Pick the port instead of a free one (a test that starts the server after a client first tried it). */
  port?: number;
  /** Create the cluster and its config but do not start the server yet (call `start`). */
  deferStart?: boolean;
}): Promise<Postgres> {
  if (!existsSync(`${PG_BIN}/postgres`))
    throw new Error(`${PG_BIN}/postgres is missing: run node scripts/peers.mjs`);
  const dir = mkdtempSync(join(tmpdir(), 'gh-pg-'));
  chmodSync(dir, 0o755);
  const data = join(dir, 'data');
  const pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  const tlsDir = join(dir, 'tls');
  execFileSync('mkdir', ['-p', tlsDir]);
  const ca = makeServerCa(tlsDir);
  const dbCa = join(tlsDir, 'gatehouse-db-ca.crt');
  writeFileSync(dbCa, opts.dbCaPem ?? ca.caPem);
  for (const f of [ca.keyFile, ca.certFile, dbCa]) {
    chownSync(f, pgUid, pgGid);
    chmodSync(f, 0o600);
  }
  chownSync(tlsDir, pgUid, pgGid);
  chownSync(dir, pgUid, pgGid);
  await run(
    'runuser',
    ['-u', 'postgres', '--', `${PG_BIN}/initdb`, '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync'],
    {
      cwd: dir,
    },
  );
  const port = opts.port ?? (await freePort());
  appendFileSync(
    join(data, 'postgresql.conf'),
    [
      `listen_addresses = '127.0.0.1'`,
      `port = ${port}`,
      `unix_socket_directories = '${dir}'`,
      'ssl = on',
      `ssl_cert_file = '${ca.certFile}'`,
      `ssl_key_file = '${ca.keyFile}'`,
      `ssl_ca_file = '${dbCa}'`,
      'fsync = off',
      'max_connections = 60',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(data, 'pg_hba.conf'),
    [...(opts.hba ?? []), 'local all all trust', 'hostssl all all 127.0.0.1/32 cert', ''].join('\n'),
  );
  const pgCtl = (args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, ...args], { cwd: dir });
  const start = async () => {
    await pgCtl(['-l', join(dir, 'log'), '-w', 'start']);
  };
  if (!opts.deferStart) await start();
  const sql = async (text: string, db = 'postgres') => {
    const r = await run(
      'psql',
      [
        '-X',
        '-q',
        '-A',
        '-t',
        '-v',
        'ON_ERROR_STOP=1',
        '-h',
        dir,
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        db,
        '-c',
        text,
      ],
      {
        cwd: dir,
      },
    );
    return r.stdout.trim();
  };
  const pg: Postgres = {
    port,
    dir,
    serverCaPem: ca.caPem,
    serverCaFile: ca.caFile,
    sql,
    async setDbCa(pem: string) {
      writeFileSync(dbCa, pem);
      // pg_reload_conf re-reads the SSL files (PostgreSQL 10+); open connections keep theirs.
      if ((await sql('SELECT pg_reload_conf()')) !== 't') throw new Error('pg_reload_conf failed');
    },
    start,
    async pause() {
      await pgCtl(['-m', 'fast', '-w', 'stop']);
    },
    async stop() {
      await run(
        'runuser',
        ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, '-D', data, '-m', 'immediate', 'stop'],
        { cwd: dir },
      ).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (opts.deferStart) return pg;
  try {
    for (const r of opts.roles ?? []) await sql(`CREATE ROLE "${r}" LOGIN`);
    for (const d of opts.databases ?? []) await sql(`CREATE DATABASE "${d}"`);
  } catch (err) {
    await pg.stop();
    throw err;
  }
  return pg;
}
