import { readFile } from 'node:fs/promises';
import type pg from 'pg';
import type { Clock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import type { LogFn } from '../log.js';
import { readSecretFile } from '../util/secret-file.js';
import { PostgresBackend } from './postgres.js';

/** `backend: { type: postgres, ... }` as the resolved config holds it (file paths not read yet). */
export interface PostgresBackendConfig {
  type: 'postgres';
  /** postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full (a password here is allowed but better kept in a file). */
  uri: string;
  /** File whose first line is the password. */
  passwordFile?: string | undefined;
  tls?:
    | {
        caFile?: string | undefined;
        certFile?: string | undefined;
        keyFile?: string | undefined;
        serverName?: string | undefined;
      }
    | undefined;
  poolSize?: number | undefined;
}

/** The password when neither the URI nor backend.password_file has one. */
export const BACKEND_PASSWORD_ENV = 'GATEHOUSE_BACKEND_PASSWORD';

// No `require` (libpq's encrypted-but-unverified mode): the backend holds the
// sealed CAs, users and locks, so a TLS hop to it always verifies the server.
const SSL_MODES = ['disable', 'verify-ca', 'verify-full'] as const;
type SslMode = (typeof SSL_MODES)[number];

export interface ParsedPostgresUri {
  host: string;
  port: number;
  user: string | undefined;
  password: string | undefined;
  database: string;
  sslmode: SslMode;
}

/**
 * Reads a backend URI, or says what is wrong with it (for the config check,
 * so a bad URI stops `gatehouse start` before anything connects).
 * `?host=/dir` names a Unix socket directory; sslmode defaults to
 * verify-full over TCP and disable on a socket.
 */
export function parsePostgresUri(uri: string): ParsedPostgresUri | string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return 'not a URI: write postgres://USER@HOST:5432/DATABASE';
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    return `the scheme must be postgres:// or postgresql://, not ${u.protocol}//`;
  }
  const known = new Set(['sslmode', 'host']);
  for (const k of u.searchParams.keys()) {
    if (!known.has(k)) return `unknown parameter "${k}" (known: ${[...known].join(', ')})`;
  }
  const socket = u.searchParams.get('host') ?? undefined;
  const host = socket ?? decodeURIComponent(u.hostname.replace(/^\[|\]$/g, ''));
  if (!host) return 'no host: write postgres://USER@HOST:5432/DATABASE (or ?host=/socket/dir)';
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database || database.includes('/'))
    return 'no database name: write postgres://USER@HOST:5432/DATABASE';
  const mode = u.searchParams.get('sslmode') ?? (host.startsWith('/') ? 'disable' : 'verify-full');
  if (mode === 'require') {
    return 'sslmode=require does not verify the server, so it is not accepted: use verify-full (the default) with backend.tls.ca_file naming the CA of the server certificate, or verify-ca';
  }
  if (!(SSL_MODES as readonly string[]).includes(mode)) {
    return `sslmode must be one of ${SSL_MODES.join(', ')}, not "${mode}"`;
  }
  return {
    host,
    port: u.port ? Number(u.port) : 5432,
    user: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    database,
    sslmode: mode as SslMode,
  };
}

async function readPem(file: string, key: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `cannot read ${key} ${file}`, {
      cause,
      hint: `check the path in ${key}`,
    });
  }
}

/** The node-postgres connection for a `backend:` config: files read, the password found, TLS set up. */
export async function postgresConnection(
  spec: PostgresBackendConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<pg.ClientConfig> {
  const uri = parsePostgresUri(spec.uri);
  if (typeof uri === 'string') {
    throw new GatehouseError('GH_ERR_CONFIG_INVALID', `invalid backend.uri: ${uri}`, {
      hint: 'write backend.uri as postgres://USER@HOST:5432/DATABASE?sslmode=verify-full',
    });
  }
  if (uri.password !== undefined && spec.passwordFile !== undefined) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      'backend.uri has a password and backend.password_file is set',
      {
        hint: 'keep backend.password_file and remove the password from backend.uri',
      },
    );
  }
  const password =
    spec.passwordFile !== undefined
      ? await readSecretFile(spec.passwordFile, 'backend.password_file')
      : (uri.password ?? env[BACKEND_PASSWORD_ENV]);
  const tls = spec.tls;
  if (tls && uri.sslmode === 'disable' && (tls.caFile || tls.certFile || tls.keyFile)) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      'backend.tls is set but backend.uri says sslmode=disable',
      {
        hint: 'remove sslmode=disable from backend.uri (verify-full is the default over TCP), or remove backend.tls',
      },
    );
  }
  if ((tls?.certFile === undefined) !== (tls?.keyFile === undefined)) {
    throw new GatehouseError(
      'GH_ERR_CONFIG_INVALID',
      'backend.tls needs both cert_file and key_file, or neither',
      {
        hint: 'set backend.tls.cert_file and backend.tls.key_file together (a client certificate and its key)',
      },
    );
  }
  let ssl: pg.ClientConfig['ssl'] = false;
  if (uri.sslmode !== 'disable') {
    ssl = {
      ...(tls?.caFile ? { ca: await readPem(tls.caFile, 'backend.tls.ca_file') } : {}),
      ...(tls?.certFile ? { cert: await readPem(tls.certFile, 'backend.tls.cert_file') } : {}),
      ...(tls?.keyFile ? { key: await readPem(tls.keyFile, 'backend.tls.key_file') } : {}),
      ...(tls?.serverName ? { servername: tls.serverName } : {}),
      // verify-ca checks the chain but not the name, as libpq does.
      ...(uri.sslmode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    };
    if (tls?.serverName && uri.sslmode === 'verify-full') {
      const name = tls.serverName;
      const { checkServerIdentity } = await import('node:tls');
      ssl.checkServerIdentity = (_host, cert) => checkServerIdentity(name, cert);
    }
  }
  return {
    host: uri.host,
    port: uri.port,
    database: uri.database,
    ...(uri.user !== undefined ? { user: uri.user } : {}),
    ...(password !== undefined ? { password } : {}),
    ssl,
  };
}

export interface OpenPostgresOptions {
  clock?: Clock;
  /** backend.pool_size */
  poolSize?: number | undefined;
  /** Told about each failed attempt while the server is unreachable. */
  log?: LogFn;
  /** How long to keep retrying an unreachable server at start; default: until it answers. 0: fail at once. */
  waitMs?: number;
  /** Stops the retrying (the daemon shutting down). */
  signal?: AbortSignal;
}

/**
 * Opens the configured PostgreSQL backend (`connection` from
 * postgresConnection). A server that cannot be reached
 * (not started yet, restarting, network down) is retried with backoff and
 * each attempt logged; a URI, credentials or TLS setup that is wrong fails
 * at once, naming the setting, since waiting cannot fix it.
 */
export async function openPostgresBackend(
  connection: pg.ClientConfig,
  opts: OpenPostgresOptions = {},
): Promise<PostgresBackend> {
  const deadline = opts.waitMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.waitMs;
  let delay = 500;
  for (;;) {
    try {
      return await PostgresBackend.open({
        connection,
        setting: 'backend',
        ...(opts.clock ? { clock: opts.clock } : {}),
        ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}),
      });
    } catch (e) {
      const retryable = e instanceof GatehouseError && e.details?.['retryable'] === true;
      if (!retryable || opts.signal?.aborted || Date.now() + delay > deadline) throw e;
      opts.log?.('error', `${(e as Error).message}; retrying in ${Math.round(delay / 100) / 10} s`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        opts.signal?.addEventListener(
          'abort',
          () => {
            clearTimeout(t);
            resolve();
          },
          { once: true },
        );
      });
      delay = Math.min(delay * 2, 10_000);
    }
  }
}
