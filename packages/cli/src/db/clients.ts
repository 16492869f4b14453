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
  dbName?: string | undefined;
  /** 0600 files: route certificate, its key, and the CA that verifies the proxy. */
  files: { cert: string; key: string; ca: string };
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
  /** Arguments and environment for `db connect` (extra user arguments are appended). */
  connect(login: DbLogin, env: NodeJS.ProcessEnv): { args: string[]; env: Record<string, string> };
  /** Variables `db env` prints (the client's own environment variables). */
  envVars(login: DbLogin): Record<string, string>;
  /** The command line `db login` suggests. */
  hint(login: DbLogin, env: NodeJS.ProcessEnv): string;
  /** Where the client connects when not the proxy's own address (MySQL: its dedicated port). */
  address?(proxy: string, ping: PingResponse): { host: string; port: number };
}

export const DB_CLIENTS: Partial<Record<DbLogin['protocol'], DbClientConfig>> = {
  postgres: postgresClient,
  mysql: mysqlClient,
};
