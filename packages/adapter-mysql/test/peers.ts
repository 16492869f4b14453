import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitForPort } from '@gatehouse/core/testing';

const run = promisify(execFile);

export const MARIADBD = '/usr/sbin/mariadbd';
export const MARIADB = '/usr/bin/mariadb';

export interface Mariadb {
  port: number;
  dir: string;
  /** CA that signed the server certificate (for the gateway's database entry). */
  serverCaPem: string;
  serverCaFile: string;
  /** Runs SQL as root over the unix socket (a secure transport, so allowed). */
  sql(text: string): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

/** A throwaway CA and a server certificate for localhost/127.0.0.1, made by the real openssl. */
function makeServerCert(dir: string): { ca: string; cert: string; key: string } {
  const ca = path.join(dir, 'server-ca.crt');
  const caKey = path.join(dir, 'server-ca.key');
  const key = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const cert = path.join(dir, 'server.crt');
  const ext = path.join(dir, 'server.ext');
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
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
    ca,
    '-subj',
    '/CN=test mariadb CA',
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
    key,
    '-out',
    csr,
    '-subj',
    '/CN=localhost',
  ]);
  execFileSync('sh', ['-c', `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > '${ext}'`]);
  ossl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return { ca, cert, key };
}

/**
 * A real MariaDB (shared/PEERS.md) on a free loopback port that requires TLS
 * and trusts `clientCaPem` (Gatehouse's db CA) for X.509 users.
 */
export async function startMariadb(opts: { clientCaPem: string; extraArgs?: string[] }): Promise<Mariadb> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-mariadb-'));
  await chmod(dir, 0o755);
  const data = path.join(dir, 'data');
  await mkdir(data);
  const { uid, gid } = mysqlIds();
  const tls = makeServerCert(dir);
  const clientCa = path.join(dir, 'client-ca.pem');
  await writeFile(clientCa, opts.clientCaPem);
  for (const f of [tls.key, tls.cert, tls.ca, clientCa]) await chown(f, uid, gid);
  await chown(data, uid, gid);
  await run('mariadb-install-db', [
    '--no-defaults',
    `--datadir=${data}`,
    '--user=mysql',
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ]);
  const port = await freePort();
  // mariadbd runs as mysql: its socket and pid file go in a directory it owns.
  const runDir = path.join(dir, 'run');
  await mkdir(runDir);
  await chown(runDir, uid, gid);
  const sock = path.join(runDir, 'sock');
  let out = '';
  const child: ChildProcess = spawn(
    MARIADBD,
    [
      '--no-defaults',
      '--user=mysql',
      `--datadir=${data}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${sock}`,
      `--pid-file=${path.join(runDir, 'mariadbd.pid')}`,
      `--ssl-ca=${clientCa}`,
      `--ssl-cert=${tls.cert}`,
      `--ssl-key=${tls.key}`,
      '--require-secure-transport=ON',
      '--skip-log-bin',
      '--innodb-buffer-pool-size=32M',
      '--innodb-flush-log-at-trx-commit=0',
      '--local-infile=ON',
      ...(opts.extraArgs ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForPort(port, child, 30_000, 'mariadbd');
    // The TCP port opens before the unix socket; "ready for connections" follows both.
    const deadline = Date.now() + 30_000;
    while (!out.includes('ready for connections')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('mariadbd did not become ready');
      await new Promise((r) => setTimeout(r, 25));
    }
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${out}`);
  }
  const { readFile } = await import('node:fs/promises');
  return {
    port,
    dir,
    serverCaPem: await readFile(tls.ca, 'utf8'),
    serverCaFile: tls.ca,
    async sql(text: string) {
      const r = await run(MARIADB, ['--no-defaults', '-S', sock, '-uroot', '-N', '-B', '-e', text]);
      return r.stdout;
    },
    log: () => out,
    stop,
  };
}

function mysqlIds(): { uid: number; gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'mysql']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'mysql']).toString().trim());
  return { uid, gid };
}

/** The subject string MariaDB compares REQUIRE SUBJECT against, as openssl prints it (-nameopt compat). */
export function opensslSubject(certPem: string): string {
  const out = execFileSync('openssl', ['x509', '-noout', '-subject', '-nameopt', 'compat'], {
    input: certPem,
  }).toString();
  return out.replace(/^subject=\s*/, '').trim();
}
