import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type AddDatabaseRequest, type DatabaseView, GatehouseError, parseHostPort } from '@gatehouse/core';
import type { Command } from 'commander';
import { parseTraits } from '../args.js';
import { type Ctx, profileClient, withAdmin } from '../context.js';
import { DB_CLIENTS, type DbClientConfig, type DbLogin } from '../db/clients.js';
import { writePrivate } from '../db/files.js';
import { KEYSTORE_PASSWORD, pkcs8Der, pkcs12 } from '../db/keystore.js';
import { json, table } from '../output.js';
import { type ProfileEntry, requireProfile } from '../profile.js';
import {
  BROWSER_HELP,
  MFA_CODE_HELP,
  MFA_MODE_HELP,
  mfaSource,
  sessionMfaCerts,
  tlsPublicKeyPem,
  withCertFile,
} from '../session-mfa.js';
import { asUsage, examples, usage } from './usage.js';

export function currentProfile(ctx: Ctx): ProfileEntry {
  return requireProfile(ctx.home);
}

/** Where db login keeps one database's files: next to the profile's keys, so gatehouse logout removes them. */
function dbDir(ctx: Ctx, p: ProfileEntry, name?: string): string {
  const base = join(ctx.home.keyPaths(p.proxy, p.user).dir, 'db');
  return name === undefined ? base : join(base, name);
}

export function readLogin(ctx: Ctx, p: ProfileEntry, name: string): DbLogin {
  const file = join(dbDir(ctx, p, name), 'login.json');
  if (!existsSync(file)) {
    throw new GatehouseError('GH_ERR_NOT_FOUND', `not logged in to database "${name}"`, {
      hint: `run gatehouse db login ${name}`,
    });
  }
  return JSON.parse(readFileSync(file, 'utf8')) as DbLogin;
}

function clientFor(protocol: string): DbClientConfig {
  const c = DB_CLIENTS[protocol as DbLogin['protocol']];
  if (!c) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `gatehouse db login does not support ${protocol} databases yet`,
      {
        hint: 'connect with the gatehouse proxy commands for that protocol',
      },
    );
  }
  return c;
}

/** A single literal value (no wildcard or template) is a safe default; anything else needs a flag. */
function only(values: string[] | undefined): string | undefined {
  return values?.length === 1 && !/[*{}]/.test(values[0]!) ? values[0] : undefined;
}

export function registerDb(program: Command, ctx: Ctx): void {
  const db = program
    .command('db')
    .description('databases: register them (admins), log in and connect (users)');

  db.command('ls')
    .description('list the databases you can reach (all of them for admins)')
    .option('--json', 'print JSON')
    .addHelpText('after', examples('  $ gatehouse db ls\n  $ gatehouse db ls --json | jq -r ".[].name"'))
    .action(async (o: { json?: boolean }, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        const list: DatabaseView[] = await t.api.listDatabases();
        if (o.json) return ctx.out(json(list));
        ctx.out(
          table(
            ['NAME', 'PROTOCOL', 'URI', 'LABELS', 'DB USERS', 'DB NAMES'],
            list.map((d) => [
              d.name,
              d.protocol,
              d.uri,
              Object.entries(d.labels)
                .map(([k, v]) => `${k}=${v}`)
                .join(','),
              d.allowed?.db_users.join(',') ?? '',
              d.allowed?.db_names.join(',') ?? '',
            ]),
          ),
        );
      });
    });

  db.command('add')
    .description('register a database')
    .argument('<name>', 'name users log in to (a DNS label)')
    .requiredOption('--protocol <protocol>', 'postgres or mysql')
    .requiredOption('--uri <host:port>', 'where the database listens')
    .option('--ca-file <file>', "PEM of the CA that signed the database's server certificate")
    .option(
      '--server-name <name>',
      "name to verify in the database's certificate (default: the host of --uri)",
    )
    .option('--label <k=v...>', 'labels roles match on (repeatable)')
    .option('--description <text>')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse db add orders --protocol postgres --uri db1.internal:5432 --ca-file db-ca.pem --label env=prod --label engine=postgres',
      ),
    )
    .action(
      async (
        name: string,
        o: {
          protocol: string;
          uri: string;
          caFile?: string;
          serverName?: string;
          label?: string[];
          description?: string;
        },
        cmd: Command,
      ) => {
        if (o.protocol !== 'postgres' && o.protocol !== 'mysql') {
          throw usage(`unknown protocol "${o.protocol}"`, 'use --protocol postgres or --protocol mysql');
        }
        const labels = Object.fromEntries(
          Object.entries(asUsage(() => parseTraits(o.label))).map(([k, v]) => [k, v.join(',')]),
        );
        let caPem: string | undefined;
        if (o.caFile) {
          try {
            caPem = readFileSync(o.caFile, 'utf8');
          } catch (cause) {
            throw new GatehouseError('GH_ERR_VALIDATION', `cannot read --ca-file ${o.caFile}`, {
              hint: 'check the path',
              cause,
            });
          }
        }
        const req: AddDatabaseRequest = {
          name,
          protocol: o.protocol,
          uri: o.uri,
          labels,
          ...(caPem ? { ca_pem: caPem } : {}),
          ...(o.serverName ? { server_name: o.serverName } : {}),
          ...(o.description ? { description: o.description } : {}),
        };
        await withAdmin(cmd, ctx, async (t) => {
          const d = await t.api.addDatabase(req);
          ctx.out(`Database ${d.name} (${d.protocol}, ${d.uri}) registered.\n`);
        });
      },
    );

  db.command('rm')
    .description('unregister a database')
    .argument('<name>')
    .addHelpText('after', examples('  $ gatehouse db rm orders'))
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withAdmin(cmd, ctx, async (t) => {
        await t.api.removeDatabase(name);
        ctx.out(`Database ${name} removed.\n`);
      });
    });

  db.command('login')
    .description(
      'get a certificate for one database and write the client config (psql: ~/.pg_service.conf, mysql: ~/.my.cnf) and JDBC key files',
    )
    .argument('<name>', 'a database from gatehouse db ls')
    .option('--db-user <user>', 'database user to connect as (default: the only one your roles allow)')
    .option(
      '--db-name <name>',
      'default database name (default: the only one your roles allow; any allowed name works when connecting)',
    )
    .option('--json', 'print what was written (files, JDBC URL) as JSON')
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse db login orders --db-user alice --db-name app\n  $ psql "service=orders"\n  $ pg_restore -d "service=orders dbname=app_copy" app.dump',
      ),
    )
    .action(async (name: string, o: { dbUser?: string; dbName?: string; json?: boolean }) => {
      const p = currentProfile(ctx);
      const api = profileClient(ctx, p);
      try {
        const dbs = await api.listDatabases();
        const found = dbs.find((d) => d.name === name);
        if (!found) {
          throw new GatehouseError(
            'GH_ERR_NOT_FOUND',
            `database "${name}" is not registered or not visible to you`,
            {
              hint: 'list the databases you can reach with gatehouse db ls',
            },
          );
        }
        const client = clientFor(found.protocol);
        const dbUser = o.dbUser ?? only(found.allowed?.db_users);
        if (!dbUser) {
          throw usage(
            `choose a database user for ${name}`,
            `pass --db-user (your roles allow: ${found.allowed?.db_users.join(', ') || 'see gatehouse db ls'})`,
          );
        }
        const dbName = o.dbName ?? only(found.allowed?.db_names);
        // The route names the database and the user; the name is only a default (core checks db_names at connect).
        const res = await api.routeCert({
          route: { kind: 'db', name, user: dbUser, ...(dbName ? { database: dbName } : {}) },
        });
        const dir = dbDir(ctx, p, name);
        const files = {
          cert: join(dir, 'tls.crt'),
          key: join(dir, 'tls.key'),
          ca: join(dir, 'ca.pem'),
          pk8: join(dir, 'tls.pk8'),
          p12: join(dir, 'tls.p12'),
        };
        const keyPem = ctx.home.readKeys(p).tlsKey;
        writePrivate(files.cert, res.tls_cert);
        writePrivate(files.key, keyPem);
        writePrivate(files.ca, res.cas.host_x509.join('\n'));
        writePrivate(files.pk8, pkcs8Der(keyPem));
        writePrivate(files.p12, pkcs12(res.tls_cert, keyPem, KEYSTORE_PASSWORD));
        const { host, port } = client.address
          ? client.address(p.proxy, await api.ping())
          : parseHostPort(p.proxy);
        const login: DbLogin = {
          name,
          protocol: found.protocol,
          host,
          port,
          dbUser,
          dbName,
          files,
          keystorePassword: KEYSTORE_PASSWORD,
        };
        writePrivate(join(dir, 'login.json'), `${JSON.stringify(login, null, 2)}\n`);
        const where = client.write(login, ctx.env);
        const allowedNames = found.allowed?.db_names ?? [];
        const jdbc = client.jdbcUrl(login);
        const uri = client.uri?.(login);
        if (o.json) {
          return ctx.out(
            json({
              name,
              protocol: found.protocol,
              host,
              port,
              db_user: dbUser,
              db_name: dbName ?? null,
              allowed_db_names: allowedNames,
              expires: res.expires,
              config_file: where,
              connect: client.hint(login, ctx.env),
              ...(uri ? { uri } : {}),
              jdbc_url: jdbc,
              files,
              keystore_password: KEYSTORE_PASSWORD,
            }),
          );
        }
        const other = allowedNames.find((n) => n !== dbName && !/[*{}]/.test(n));
        ctx.out(
          `Logged in to database ${name} as ${dbUser}${dbName ? ` (database ${dbName})` : ''} until ${res.expires}.\n` +
            `Database names your roles allow: ${allowedNames.join(', ') || 'none'} (one login covers them all).\n` +
            `Wrote ${where}. Connect with:\n\n  ${client.hint(login, ctx.env)}\n` +
            (other ? `  ${client.otherName(login, other, ctx.env)}\n` : '') +
            (uri
              ? `\nConnection URI (psycopg, node-postgres, SQLAlchemy, pgcli: they do not all read the service file):\n\n  ${uri}\n`
              : '') +
            `\nJDBC URL:\n\n  ${jdbc}\n` +
            `\nKey files in ${dir}: tls.pk8 (PKCS#8 DER key, pgjdbc), tls.p12 (PKCS#12 keystore of the certificate and key, empty password).\n`,
        );
      } finally {
        api.close();
      }
    });

  db.command('connect')
    .description('run the database client for a database you logged in to (arguments after -- go to it)')
    .argument('<name>')
    .argument('[args...]', 'extra client arguments')
    .option('--mfa-code <code>', MFA_CODE_HELP)
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .addHelpText(
      'after',
      examples(
        '  $ gatehouse db connect orders\n  $ gatehouse db connect orders -- -c "select 1"\n  $ gatehouse db connect orders --mfa-code 123456 -- -c "select 1"',
      ),
    )
    .action(
      async (name: string, args: string[], o: { mfaCode?: string; mfaMode?: string; browser?: string }) => {
        const p = currentProfile(ctx);
        const login = readLogin(ctx, p, name);
        const client = clientFor(login.protocol);
        // The proxy says whether this session needs a fresh check (require_session_mfa).
        const mfa = await sessionMfaCerts(
          ctx.home,
          p,
          { kind: 'db', name, user: login.dbUser },
          { tls_public_key: tlsPublicKeyPem(ctx.home, p) },
          mfaSource(o, ctx.env),
          `database ${name} as ${login.dbUser}`,
        );
        ctx.exitCode = mfa?.tls_cert
          ? await withCertFile(mfa.tls_cert, 'mfa-tls.crt', (file) => runClient(client, login, args, file))
          : await runClient(client, login, args);
      },
    );

  /** The database client for `db connect`, with its exit status. */
  const runClient = (client: DbClientConfig, login: DbLogin, args: string[], certFile?: string) => {
    const c = client.connect(login, ctx.env, certFile);
    return new Promise<number>((resolve, reject) => {
      const child = spawn(client.program, [...c.args, ...args], {
        stdio: 'inherit',
        env: { ...ctx.env, ...c.env },
      });
      child.on('error', (err) =>
        reject(
          new GatehouseError('GH_ERR_NOT_FOUND', `cannot run ${client.program}: ${err.message}`, {
            hint: `install ${client.program} (e.g. apt-get install postgresql-client)`,
            cause: err,
          }),
        ),
      );
      child.on('close', (status) => resolve(status ?? 1));
    });
  };

  db.command('env')
    .description("print the client's environment variables for a database you logged in to")
    .argument('<name>')
    .addHelpText('after', examples('  $ eval "$(gatehouse db env orders)" && psql'))
    .action((name: string) => {
      const login = readLogin(ctx, currentProfile(ctx), name);
      const vars = clientFor(login.protocol).envVars(login);
      ctx.out(
        Object.entries(vars)
          .map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'\n`)
          .join(''),
      );
    });

  db.command('logout')
    .description('remove database certificates and client config (one database, or all)')
    .argument('[name]')
    .addHelpText('after', examples('  $ gatehouse db logout orders\n  $ gatehouse db logout'))
    .action((name: string | undefined) => {
      const p = currentProfile(ctx);
      const base = dbDir(ctx, p);
      const names = name !== undefined ? [name] : existsSync(base) ? readdirSync(base) : [];
      if (name !== undefined) readLogin(ctx, p, name);
      for (const n of names) {
        const file = join(base, n, 'login.json');
        if (existsSync(file)) {
          const login = JSON.parse(readFileSync(file, 'utf8')) as DbLogin;
          DB_CLIENTS[login.protocol]?.remove(n, ctx.env);
        }
        rmSync(join(base, n), { recursive: true, force: true });
        ctx.out(`Logged out of database ${n}.\n`);
      }
      if (names.length === 0) ctx.out('No database logins.\n');
    });
}
