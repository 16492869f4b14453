import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import { ER, encodeGreetingErr } from '@gatehouse/adapter-mysql';
import { errorResponse } from '@gatehouse/adapter-postgres';
import { GatehouseError, parseHostPort } from '@gatehouse/core';
import type { Command } from 'commander';
import type { Ctx } from '../context.js';
import type { DbLogin } from '../db/clients.js';
import { mysqlProgram } from '../db/mysql.js';
import type { ProfileEntry } from '../profile.js';
import {
  BROWSER_HELP,
  MFA_CODE_HELP,
  MFA_MODE_HELP,
  type MfaCodeSource,
  mfaSource,
  sessionMfaCerts,
  tlsPublicKeyPem,
} from '../session-mfa.js';
import { currentProfile, readLogin } from './db.js';
import { usage } from './usage.js';

/** A local tunnel for one database protocol: the proxy's ALPN route and how its clients hear about failures. */
interface TunnelKind {
  alpn: string;
  /** What the local client is sent in place of the server's first answer when the proxy cannot be reached. */
  refuse(message: string): Buffer;
  /** The command line `proxy db` suggests for a plaintext client on the local port. */
  command(login: DbLogin, port: number, env: NodeJS.ProcessEnv): string;
  /** What the local port speaks, for the banner. */
  speaks: string;
}

const TUNNELS: Record<DbLogin['protocol'], TunnelKind> = {
  mysql: {
    alpn: 'gatehouse-mysql',
    // ER_UNKNOWN_ERROR in place of the greeting (no SQLSTATE marker before the handshake): the client shows it to the user.
    refuse: (message) => encodeGreetingErr(ER.UNKNOWN_ERROR.code, message),
    command(login, port, env) {
      const program = mysqlProgram(env);
      const tlsOff = program === 'mariadb' ? '--skip-ssl' : '--ssl-mode=DISABLED';
      return `${program} -h127.0.0.1 -P${port} -u${login.dbUser}${login.dbName ? ` -D${login.dbName}` : ''} ${tlsOff}`;
    },
    speaks: 'plain MySQL',
  },
  postgres: {
    alpn: 'gatehouse-postgres',
    // libpq reads an ErrorResponse in place of the answer to its SSLRequest or startup, and prints it.
    refuse: (message) => errorResponse({ severity: 'FATAL', code: '08006', message }),
    command: (login, port) =>
      `psql "host=127.0.0.1 port=${port} user=${login.dbUser}${login.dbName ? ` dbname=${login.dbName}` : ''} sslmode=disable"`,
    speaks: 'plain PostgreSQL (no TLS, no client certificate)',
  },
};

/**
 * A bound certificate this close to its end is not used for a new
 * connection: the proxy checks the minute when the TLS handshake ends, a
 * moment after the tunnel picked it.
 */
const MFA_CERT_MARGIN_MS = 5_000;

/**
 * Per-session MFA for a local tunnel (require_session_mfa, decision 0037):
 * each client connection through the tunnel is a new database session and
 * gets its own check and its own one-minute certificate bound to the
 * database user. The check made when the tunnel starts pays for the first
 * connection (if it comes within the minute). Checks run one at a time: a
 * GUI client that opens several connections is asked once per connection.
 * Returns `cert()`, the certificate for the next connection, or undefined
 * when the roles require no check (the db login certificate then serves).
 */
async function tunnelMfa(
  ctx: Ctx,
  profile: ProfileEntry,
  login: DbLogin,
  flags: { mfaCode?: string | undefined; mfaMode?: string | undefined; browser?: string | undefined },
): Promise<{ cert(): Promise<string> } | undefined> {
  const source = mfaSource(flags, ctx.env);
  const mfaCode = flags.mfaCode;
  const target = { kind: 'db' as const, name: login.name, user: login.dbUser };
  const keys = { tls_public_key: tlsPublicKeyPem(ctx.home, profile) };
  // `--mfa-code -`: one code a line on stdin, read as the checks come (a code is good for one check).
  let readCode: MfaCodeSource['readCode'];
  if (mfaCode === '-') {
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
    readCode = async () => {
      const next = await lines.next();
      if (next.done) {
        throw new GatehouseError(
          'GH_ERR_VALIDATION',
          'no authenticator code left on stdin for this connection',
          {
            hint: "write one code a line to the tunnel's stdin per new connection, or start the tunnel on a terminal to be asked",
          },
        );
      }
      return next.value;
    };
  }
  const check = (source: MfaCodeSource, describe: string) =>
    sessionMfaCerts(ctx.home, profile, target, keys, source, describe);
  const first = await check(
    { ...source, readCode },
    `the tunnel to database ${login.name} as ${login.dbUser}`,
  );
  if (!first?.tls_cert) return undefined;
  let held: { cert: string; expires: number } | undefined = {
    cert: first.tls_cert,
    expires: Date.parse(first.expires),
  };
  let queue: Promise<unknown> = Promise.resolve();
  const next = async (): Promise<string> => {
    const h = held;
    held = undefined;
    if (h && Date.now() < h.expires - MFA_CERT_MARGIN_MS) return h.cert;
    // A code from --mfa-code CODE or the environment was used by the first check: later ones ask
    // (or read the next line of stdin, or open the security key page again).
    const got = await check(
      { mfaMode: source.mfaMode, browser: source.browser, readCode },
      `a new connection through the tunnel to database ${login.name} as ${login.dbUser}`,
    );
    if (!got?.tls_cert) {
      throw new GatehouseError(
        'GH_ERR_SESSION_MFA_REQUIRED',
        'the proxy issued no certificate for this connection',
        {
          hint: `restart the tunnel: gatehouse proxy db ${login.name}`,
        },
      );
    }
    return got.tls_cert;
  };
  return {
    cert() {
      const c = queue.then(next);
      queue = c.catch(() => undefined);
      return c;
    },
  };
}

/** The `gatehouse proxy` group; `proxy ssh` is added to the same group by looking it up. */
export function proxyGroup(program: Command): Command {
  return (
    program.commands.find((c) => c.name() === 'proxy') ??
    program.command('proxy').description('local tunnels to resources behind Gatehouse')
  );
}

export function registerProxy(program: Command, ctx: Ctx): void {
  proxyGroup(program)
    .command('db')
    .description(
      'a local plaintext port for a database you logged in to, tunnelled to the proxy with your certificate',
    )
    .argument('<name>', 'a database from gatehouse db login')
    .option('--port <port>', 'local port on 127.0.0.1 (0: pick a free one)', '0')
    .option(
      '--mfa-code <code>',
      `${MFA_CODE_HELP}; with require_session_mfa each new connection through the tunnel asks again ("-": one code a line on stdin)`,
    )
    .option('--mfa-mode <mode>', MFA_MODE_HELP)
    .option('--browser <command>', BROWSER_HELP)
    .addHelpText(
      'after',
      '\nExamples:\n  $ gatehouse db login shop\n  $ gatehouse proxy db shop --port 3307\n  $ mariadb -h127.0.0.1 -P3307 -ualice --skip-ssl\n' +
        '  $ gatehouse proxy db orders --port 5433\n  $ psql "host=127.0.0.1 port=5433 user=alice dbname=app sslmode=disable"\n',
    )
    .action(
      async (name: string, o: { port: string; mfaCode?: string; mfaMode?: string; browser?: string }) => {
        const port = Number(o.port);
        if (!Number.isInteger(port) || port < 0 || port > 65535) {
          throw usage(
            `--port ${o.port} is not a port`,
            'pass a number from 0 to 65535 (0 picks a free port)',
          );
        }
        const profile = currentProfile(ctx);
        const login = readLogin(ctx, profile, name);
        const kind = TUNNELS[login.protocol];
        if (!kind) {
          throw new GatehouseError('GH_ERR_VALIDATION', `no local tunnel for ${login.protocol} databases`, {
            hint: `connect with gatehouse db connect ${name}`,
          });
        }
        const files = {
          cert: readFileSync(login.files.cert, 'utf8'),
          key: readFileSync(login.files.key, 'utf8'),
          ca: readFileSync(login.files.ca, 'utf8'),
        };
        const expires = new Date(new X509Certificate(files.cert).validTo);
        const target = parseHostPort(profile.proxy);
        // The proxy says whether this user's sessions need a fresh check (require_session_mfa).
        const mfa = await tunnelMfa(ctx, profile, login, o);
        const server = net.createServer({ noDelay: true }, async (local) => {
          // An expired certificate would only get a closed connection from the proxy: say what to do instead.
          if (Date.now() >= expires.getTime()) {
            local.on('error', () => local.destroy());
            local.end(
              kind.refuse(
                `gatehouse proxy db: the certificate for ${name} expired at ${expires.toISOString()}; run gatehouse db login ${name} (after gatehouse login if that expired too)`,
              ),
            );
            return;
          }
          let cert = files.cert;
          if (mfa) {
            local.pause();
            local.on('error', () => local.destroy());
            try {
              cert = await mfa.cert();
            } catch (e) {
              // The client waits for the server's first answer: the refusal in its place is what the user sees.
              const err = e as GatehouseError;
              const why = `gatehouse proxy db: ${err.message}${err.hint ? ` (${err.hint})` : ''}`;
              ctx.err(`${why}\n`);
              if (local.writable) local.end(kind.refuse(why));
              return;
            }
            // The client went away while it was asked: the certificate goes unused (it expires in a minute).
            if (local.destroyed) return;
          }
          const remote = tls.connect({
            host: target.host,
            port: target.port,
            ...(net.isIP(target.host) ? {} : { servername: target.host }),
            ca: files.ca,
            cert,
            key: files.key,
            ALPNProtocols: [kind.alpn],
          });
          let up = false;
          remote.once('secureConnect', () => {
            up = true;
            local.pipe(remote).pipe(local);
          });
          remote.on('error', (err) => {
            // Before the tunnel is up the client waits for the server's first answer: an error in its place is shown to the user.
            if (!up && local.writable) {
              local.end(kind.refuse(`gatehouse proxy db: cannot reach ${profile.proxy}: ${err.message}`));
            } else local.destroy();
            ctx.err(`connection to ${profile.proxy} failed: ${err.message}\n`);
          });
          local.on('error', () => remote.destroy());
          local.on('close', () => remote.destroy());
          remote.on('close', () => local.destroy());
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', (e) =>
            reject(
              new GatehouseError('GH_ERR_VALIDATION', `cannot listen on 127.0.0.1:${port}: ${e.message}`, {
                hint: 'choose another --port, or --port 0 for a free one',
                cause: e,
              }),
            ),
          );
          server.listen(port, '127.0.0.1', () => resolve());
        });
        const bound = (server.address() as net.AddressInfo).port;
        ctx.out(
          `Tunnel for database ${name} listening on 127.0.0.1:${bound} (certificate valid until ${expires.toISOString()}).\n` +
            (mfa
              ? 'Your roles require a second-factor check for every new database session: each new connection through the tunnel asks for one here.\n'
              : '') +
            `Connect with:\n\n  ${kind.command(login, bound, ctx.env)}\n\n` +
            `The tunnel carries your identity: the local port speaks ${kind.speaks}, TLS with your certificate runs to the proxy. ` +
            'Only this machine can reach it (127.0.0.1), and anyone on it who can connect acts as you: stop it when done (Ctrl-C).\n',
        );
        await new Promise<void>((resolve) => {
          const stop = () => {
            process.off('SIGINT', stop);
            process.off('SIGTERM', stop);
            server.close(() => resolve());
            // Open client connections end with the tunnel.
            server.unref();
            resolve();
          };
          process.on('SIGINT', stop);
          process.on('SIGTERM', stop);
        });
      },
    );
}
