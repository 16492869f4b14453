import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { encodeErr } from '@gatehouse/adapter-mysql';
import { GatehouseError, parseHostPort } from '@gatehouse/core';
import type { Command } from 'commander';
import type { Ctx } from '../context.js';
import { mysqlProgram } from '../db/mysql.js';
import { currentProfile, readLogin } from './db.js';
import { usage } from './usage.js';

/** ALPN protocols of the proxy's local-tunnel routes, per database protocol. */
const TUNNEL_ALPN: Record<string, string> = { mysql: 'gatehouse-mysql' };

/** ER_UNKNOWN_ERROR: sent in place of the greeting when the proxy cannot be reached. */
const ER_TUNNEL = { code: 1105, state: 'HY000' };

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
    .addHelpText(
      'after',
      '\nExamples:\n  $ gatehouse db login shop\n  $ gatehouse proxy db shop --port 3307\n  $ mariadb -h127.0.0.1 -P3307 -ualice --skip-ssl\n',
    )
    .action(async (name: string, o: { port: string }) => {
      const port = Number(o.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        throw usage(`--port ${o.port} is not a port`, 'pass a number from 0 to 65535 (0 picks a free port)');
      }
      const profile = currentProfile(ctx);
      const login = readLogin(ctx, profile, name);
      const alpn = TUNNEL_ALPN[login.protocol];
      if (!alpn) {
        throw new GatehouseError('GH_ERR_VALIDATION', `no local tunnel for ${login.protocol} databases`, {
          hint: `PostgreSQL clients reach the proxy directly: gatehouse db connect ${name}`,
        });
      }
      const files = {
        cert: readFileSync(login.files.cert, 'utf8'),
        key: readFileSync(login.files.key, 'utf8'),
        ca: readFileSync(login.files.ca, 'utf8'),
      };
      const expires = new Date(new X509Certificate(files.cert).validTo);
      const target = parseHostPort(profile.proxy);
      const server = net.createServer({ noDelay: true }, (local) => {
        const remote = tls.connect({
          host: target.host,
          port: target.port,
          ...(net.isIP(target.host) ? {} : { servername: target.host }),
          ca: files.ca,
          cert: files.cert,
          key: files.key,
          ALPNProtocols: [alpn],
        });
        let up = false;
        remote.once('secureConnect', () => {
          up = true;
          local.pipe(remote).pipe(local);
        });
        remote.on('error', (err) => {
          // Before the tunnel is up the client waits for a greeting: an ERR in its place is shown to the user.
          if (!up && local.writable) {
            local.end(
              encodeErr(0, ER_TUNNEL, `gatehouse proxy db: cannot reach ${profile.proxy}: ${err.message}`),
            );
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
      const program = mysqlProgram(ctx.env);
      const tlsOff = program === 'mariadb' ? '--skip-ssl' : '--ssl-mode=DISABLED';
      ctx.out(
        `Tunnel for database ${name} listening on 127.0.0.1:${bound} (certificate valid until ${expires.toISOString()}).\n` +
          `Connect with:\n\n  ${program} -h127.0.0.1 -P${bound} -u${login.dbUser}${login.dbName ? ` -D${login.dbName}` : ''} ${tlsOff}\n\n` +
          'The tunnel carries your identity: the local port speaks plain MySQL, TLS runs to the proxy. Ctrl-C stops it.\n',
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
    });
}
