import type { PingResponse } from '@gatehouse/core';
import { mysqlClient } from './mysql.js';
import { postgresClient } from './postgres.js';

/** What `gatehouse db login` knows about one database login (stored as login.json next to the cert). */
export interface DbLogin {
  /** Registered database name (the route). */
  name: string;
  protocol: 'postgres' | 'mysql';
  /** Where the client connects: the Gatehouse proxy (or a local tunnel for MySQL). */
  host: string;
  port: number;
  dbUser: string;
  /** The default database name (another one the roles allow can be named when connecting). */
  dbName?: string | undefined;
  /**
   * 0600 files: route certificate (PEM), its key (PEM, and PKCS#8 DER for
   * pgjdbc), the CA that verifies the proxy, and a PKCS#12 keystore of the
   * certificate and key for Java clients. Logins written before pk8/p12
   * existed lack them.
   */
  files: { cert: string; key: string; ca: string; pk8?: string; p12?: string };
  /** The PKCS#12 keystore's password (see docs/decisions/0024). */
  keystorePassword?: string;
}

/**
 * One database client's config writer (psql's ~/.pg_service.conf, mysql's
 * ~/.my.cnf, ...). Each protocol adds a sibling file and one line in
 * DB_CLIENTS; `gatehouse db` verbs only talk to this interface.
 */
export interface DbClientConfig {
  /** The client program `db connect` runs. */
  readonly program: string;
  /** Writes (or replaces) the client's config for this database; returns the file written. */
  write(login: DbLogin, env: NodeJS.ProcessEnv): string;
  /** Removes what `write` added; returns the file changed, if any. */
  remove(name: string, env: NodeJS.ProcessEnv): string | undefined;
  /**
   * Arguments and environment for `db connect` (extra user arguments are
   * appended). `certFile` replaces the login's certificate for this one
   * connection (a per-session MFA certificate for the same key).
   */
  connect(
    login: DbLogin,
    env: NodeJS.ProcessEnv,
    certFile?: string,
  ): { args: string[]; env: Record<string, string> };
  /** Variables `db env` prints (the client's own environment variables). */
  envVars(login: DbLogin): Record<string, string>;
  /** The command line `db login` suggests. */
  hint(login: DbLogin, env: NodeJS.ProcessEnv): string;
  /** The command line for another database name the roles allow, with the same login. */
  otherName(login: DbLogin, dbName: string, env: NodeJS.ProcessEnv): string;
  /** A JDBC URL for the login's files (pgjdbc, MariaDB Connector/J). */
  jdbcUrl(login: DbLogin): string;
  /** A connection URI other drivers take (libpq, psycopg, node-postgres), when the protocol has one. */
  uri?(login: DbLogin): string;
  /** Where the client connects when not the proxy's own address (MySQL: its dedicated port). */
  address?(proxy: string, ping: PingResponse): { host: string; port: number };
}

export const DB_CLIENTS: Partial<Record<DbLogin['protocol'], DbClientConfig>> = {
  postgres: postgresClient,
  mysql: mysqlClient,
};

/** A value for a URL query string; `/` and `:` stay readable (file paths), everything else is escaped. */
export function queryValue(v: string): string {
  return encodeURIComponent(v).replace(/%2F/gi, '/').replace(/%3A/gi, ':');
}

/** `a=1&b=2` from an object, values escaped. */
export function query(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k}=${queryValue(v)}`)
    .join('&');
}

/** `host:port` for a URL (IPv6 in brackets). */
export function urlHost(l: DbLogin): string {
  return `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}
