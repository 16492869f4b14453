import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type DbClientConfig, type DbLogin, query, urlHost } from './clients.js';
import { writePrivate } from './files.js';

/** libpq's per-user service file: $PGSERVICEFILE, else ~/.pg_service.conf. */
export function serviceFilePath(env: NodeJS.ProcessEnv): string {
  return env.PGSERVICEFILE || join(env.HOME || homedir(), '.pg_service.conf');
}

const SECTION = /^\s*\[([^\]]*)\]\s*$/;

/** Splits a service file into a preamble and named sections, keeping every line as written. */
function sections(text: string): { name: string | undefined; lines: string[] }[] {
  const out: { name: string | undefined; lines: string[] }[] = [{ name: undefined, lines: [] }];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  for (const line of lines) {
    const m = SECTION.exec(line);
    if (m) out.push({ name: m[1], lines: [line] });
    else out.at(-1)!.lines.push(line);
  }
  return out;
}

function join_(parts: { lines: string[] }[]): string {
  const text = parts.flatMap((p) => p.lines).join('\n');
  return text === '' ? '' : `${text}\n`;
}

/** Returns `text` with section `[name]` replaced by (or appended as) `values`; other sections untouched. */
export function upsertServiceSection(text: string, name: string, values: Record<string, string>): string {
  const body = [`[${name}]`, ...Object.entries(values).map(([k, v]) => `${k}=${v}`)];
  const parts = sections(text);
  const i = parts.findIndex((p) => p.name === name);
  if (i >= 0) {
    // Keep blank lines that separated it from the next section.
    const trailing = [];
    const old = parts[i]!.lines;
    for (let j = old.length - 1; j > 0 && old[j]!.trim() === ''; j--) trailing.unshift('');
    parts[i] = { name, lines: [...body, ...trailing] };
    return join_(parts);
  }
  const prefix = join_(parts);
  return `${prefix}${prefix && !prefix.endsWith('\n\n') ? '\n' : ''}${body.join('\n')}\n`;
}

/** Returns `text` without section `[name]`, or undefined when it has none. */
export function removeServiceSection(text: string, name: string): string | undefined {
  const parts = sections(text);
  const kept = parts.filter((p) => p.name !== name);
  if (kept.length === parts.length) return undefined;
  // Drop the blank separator line `upsertServiceSection` added before the section.
  const last = kept.at(-1)!.lines;
  while (last.length > 0 && last.at(-1)!.trim() === '') last.pop();
  return join_(kept);
}

function serviceValues(l: DbLogin): Record<string, string> {
  return {
    host: l.host,
    port: String(l.port),
    sslmode: 'verify-full',
    sslrootcert: l.files.ca,
    sslcert: l.files.cert,
    sslkey: l.files.key,
    user: l.dbUser,
    ...(l.dbName ? { dbname: l.dbName } : {}),
  };
}

export const postgresClient: DbClientConfig = {
  program: 'psql',
  write(login, env) {
    const path = serviceFilePath(env);
    const existing = existsSync(path) ? readFileSync(path, 'utf8') : '';
    writePrivate(path, upsertServiceSection(existing, login.name, serviceValues(login)));
    return path;
  },
  remove(name, env) {
    const path = serviceFilePath(env);
    if (!existsSync(path)) return undefined;
    const next = removeServiceSection(readFileSync(path, 'utf8'), name);
    if (next === undefined) return undefined;
    writePrivate(path, next);
    return path;
  },
  connect(login, env, certFile) {
    // A conninfo keyword beats the service file's (libpq fills only what is unset from it).
    const cert = certFile ? ` sslcert='${certFile.replace(/(['\\])/g, '\\$1')}'` : '';
    return { args: [`service=${login.name}${cert}`], env: { PGSERVICEFILE: serviceFilePath(env) } };
  },
  envVars(l) {
    return {
      PGHOST: l.host,
      PGPORT: String(l.port),
      PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: l.files.ca,
      PGSSLCERT: l.files.cert,
      PGSSLKEY: l.files.key,
      PGUSER: l.dbUser,
      ...(l.dbName ? { PGDATABASE: l.dbName } : {}),
    };
  },
  hint(login, env) {
    const custom = env.PGSERVICEFILE ? `PGSERVICEFILE=${env.PGSERVICEFILE} ` : '';
    return `${custom}psql "service=${login.name}"`;
  },
  otherName(login, dbName, env) {
    return `${this.hint(login, env).slice(0, -1)} dbname=${dbName}"`;
  },
  jdbcUrl(l) {
    // pgjdbc reads the certificate as PEM but the key only as PKCS#8 DER (.pk8).
    return `jdbc:postgresql://${urlHost(l)}/${encodeURIComponent(l.dbName ?? l.dbUser)}?${query({
      user: l.dbUser,
      sslmode: 'verify-full',
      sslrootcert: l.files.ca,
      sslcert: l.files.cert,
      sslkey: l.files.pk8 ?? l.files.key,
    })}`;
  },
  uri(l) {
    // libpq's URI form: psycopg, SQLAlchemy, node-postgres and pgx read it, not the service file.
    return `postgresql://${encodeURIComponent(l.dbUser)}@${urlHost(l)}/${encodeURIComponent(l.dbName ?? l.dbUser)}?${query(
      {
        sslmode: 'verify-full',
        sslrootcert: l.files.ca,
        sslcert: l.files.cert,
        sslkey: l.files.key,
      },
    )}`;
  },
};
