import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { GatehouseError, type PingResponse, parseHostPort } from '@gatehouse/core';
import { type DbClientConfig, type DbLogin, query, urlHost } from './clients.js';
import { writePrivate } from './files.js';
import { removeServiceSection, upsertServiceSection } from './postgres.js';

/** The option file every mysql/mariadb client reads for the user. */
export function myCnfPath(env: NodeJS.ProcessEnv): string {
  return join(env.HOME || homedir(), '.my.cnf');
}

/**
 * `[client_NAME]`, read by every MySQL/MariaDB tool given
 * `--defaults-group-suffix=_NAME` (and by nothing else): only options all of
 * them know (connection and TLS), or mariadb-admin stops at an unknown one.
 */
export function groupName(name: string): string {
  return `client_${name}`;
}

/**
 * `[mysql_NAME]`, read with that suffix by the mysql and mariadb shells
 * only (MariaDB's and Oracle's), for options only a shell knows (`database`).
 * MariaDB's own `[mariadb-client_NAME]` would be skipped by Oracle's client.
 */
export function shellGroupName(name: string): string {
  return `mysql_${name}`;
}

function onPath(program: string, env: NodeJS.ProcessEnv): boolean {
  return (env.PATH ?? '').split(delimiter).some((d) => d && existsSync(join(d, program)));
}

/** `mariadb` when installed, else `mysql`. */
export function mysqlProgram(env: NodeJS.ProcessEnv): string {
  return onPath('mariadb', env) || !onPath('mysql', env) ? 'mariadb' : 'mysql';
}

/**
 * Oracle's mysql client dropped ssl-verify-server-cert for ssl-mode and
 * refuses unknown options in its groups, so the group is written for the
 * client that is installed.
 */
function oracleClient(env: NodeJS.ProcessEnv): boolean {
  if (mysqlProgram(env) !== 'mysql') return false;
  const v = spawnSync('mysql', ['--version'], { env, encoding: 'utf8' });
  return v.status === 0 && !/mariadb/i.test(v.stdout);
}

/** The `[client_NAME]` group: what every tool needs to reach the gateway as this login. */
export function myCnfValues(l: DbLogin, oracle: boolean): Record<string, string> {
  return {
    host: l.host,
    port: String(l.port),
    // TCP even for "localhost", which the client would otherwise take as the unix socket.
    protocol: 'TCP',
    user: l.dbUser,
    'ssl-ca': l.files.ca,
    'ssl-cert': l.files.cert,
    'ssl-key': l.files.key,
    ...(oracle ? { 'ssl-mode': 'VERIFY_IDENTITY' } : { 'ssl-verify-server-cert': '1' }),
  };
}

export const mysqlClient: DbClientConfig & {
  address(proxy: string, ping: PingResponse): { host: string; port: number };
} = {
  get program() {
    return mysqlProgram(process.env);
  },
  /** The MySQL listener: the proxy's host with mysql_listen's port. */
  address(proxy, ping) {
    if (!ping.mysql_listen) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `the proxy ${proxy} has no MySQL listener (mysql_listen)`,
        {
          hint: 'use a local tunnel instead: gatehouse proxy db NAME, or ask the admin to set mysql_listen',
        },
      );
    }
    return { host: parseHostPort(proxy).host, port: parseHostPort(ping.mysql_listen).port };
  },
  write(login, env) {
    const path = myCnfPath(env);
    let text = existsSync(path) ? readFileSync(path, 'utf8') : '';
    text = upsertServiceSection(text, groupName(login.name), myCnfValues(login, oracleClient(env)));
    const shell = shellGroupName(login.name);
    text = login.dbName
      ? upsertServiceSection(text, shell, { database: login.dbName })
      : (removeServiceSection(text, shell) ?? text);
    writePrivate(path, text);
    return path;
  },
  remove(name, env) {
    const path = myCnfPath(env);
    if (!existsSync(path)) return undefined;
    const text = readFileSync(path, 'utf8');
    const withoutClient = removeServiceSection(text, groupName(name));
    const next = removeServiceSection(withoutClient ?? text, shellGroupName(name)) ?? withoutClient;
    if (next === undefined) return undefined;
    writePrivate(path, next);
    return path;
  },
  connect(login, _env, certFile) {
    // Must come first: the client reads option files before anything else.
    return {
      args: [`--defaults-group-suffix=_${login.name}`, ...(certFile ? [`--ssl-cert=${certFile}`] : [])],
      env: {},
    };
  },
  envVars(l) {
    // The client has no variables for certificates; these cover the address, the group the rest.
    return { MYSQL_HOST: l.host, MYSQL_TCP_PORT: String(l.port) };
  },
  hint(login, env) {
    return `${mysqlProgram(env)} --defaults-group-suffix=_${login.name}`;
  },
  otherName(login, dbName, env) {
    return `${this.hint(login, env)} ${dbName}`;
  },
  jdbcUrl(l) {
    return `jdbc:mariadb://${urlHost(l)}/${encodeURIComponent(l.dbName ?? '')}?${query({
      user: l.dbUser,
      // Connector/J 3 reads sslMode; 2.x (Debian's libmariadb-java) only useSsl, which 3 still maps to verify-full.
      sslMode: 'verify-full',
      useSsl: 'true',
      serverSslCert: l.files.ca,
      ...(l.files.p12
        ? { keyStore: l.files.p12, keyStoreType: 'PKCS12', keyStorePassword: l.keystorePassword ?? '' }
        : {}),
    })}`;
  },
};
