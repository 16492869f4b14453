import diagnostics_channel from 'node:diagnostics_channel';
import { dirname, resolve } from 'node:path';
import { createGateway, LOG_CHANNEL, type LogRecord, loadConfig } from '@gatehouse/core';
import type { Command } from 'commander';
import { defaultAdapters } from '../adapters.js';
import { relativeTime } from '../args.js';
import { acceptInviteCommand, boundAddr, type Ctx, type GlobalOpts } from '../context.js';
import { type GatewayPlugins, startGatewayPlugins } from '../plugins/in-gateway.js';

/** MySQL speaks first, so it needs its own port; this one in the embedded quick start. */
export const EMBEDDED_MYSQL_LISTEN = '127.0.0.1:3036';
/** What `gatehouse start` without --config adds to the config defaults. */
const EMBEDDED_DEFAULTS = { mysql_listen: EMBEDDED_MYSQL_LISTEN, builtin_node: true } as const;

export function registerStart(program: Command, ctx: Ctx): void {
  program
    .command('start')
    .description('run the gateway in the foreground (Ctrl-C or SIGTERM stops it)')
    .option('--listen <host:port>', 'address to listen on (overrides the config file)')
    .option(
      '--mysql-listen <host:port|off>',
      "MySQL's own listener, or off (overrides $GATEHOUSE_MYSQL_LISTEN and the config's mysql_listen)",
    )
    .addHelpText(
      'after',
      `
The data dir comes from --data-dir, the config file's data_dir, or $GATEHOUSE_DATA_DIR.
Without --config the embedded defaults apply: SQLite in the data dir, the listener on
127.0.0.1:3080, MySQL's own listener on ${EMBEDDED_MYSQL_LISTEN}, second factor otp, and
the built-in SSH node service for this machine (node <hostname>, label builtin=true).
With a config file MySQL's listener and the built-in node are off unless the config
sets mysql_listen and builtin_node: true. MySQL's listener is moved or turned off, in
every mode, with --mysql-listen HOST:PORT|off, $GATEHOUSE_MYSQL_LISTEN or mysql_listen
(in that order); port 0 picks a free port, and clients are told the bound one.
On the first start with no users, an invite for the first admin is printed.
SIGHUP reads the config again: configured databases, nodes, Kubernetes clusters and
desktops change at once (live sessions stay), MySQL's listener moves or turns off;
other changed keys are named as needing a restart; a config that does not load is
refused and the running one kept.

Examples:
  $ gatehouse start --data-dir /var/lib/gatehouse --listen 0.0.0.0:3080
  $ gatehouse start --data-dir ./data2 --listen 127.0.0.1:4080 --mysql-listen off
  $ gatehouse start --config /etc/gatehouse.yaml`,
    )
    .action(async (opts: { listen?: string; mysqlListen?: string }, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOpts>();
      // The gateway's diagnostics (core publishes them; nothing prints them
      // otherwise): errors always, debug records with --debug.
      const onLog = (message: unknown) => {
        const r = message as LogRecord;
        if (r.level === 'debug' && !g.debug) return;
        const cause =
          r.err instanceof Error
            ? g.debug
              ? r.err.stack
              : r.err.message
            : r.err === undefined
              ? ''
              : String(r.err);
        ctx.err(`gatehouse: ${r.level}: ${r.msg}${cause ? `: ${cause}` : ''}\n`);
      };
      diagnostics_channel.subscribe(LOG_CHANNEL, onLog);
      const load = () =>
        loadConfig({
          file: g.config,
          overrides: { dataDir: g.dataDir, listen: opts.listen, mysqlListen: opts.mysqlListen },
          // The embedded quick start (no config file) also opens MySQL's own port
          // and serves this machine as a node; with a config file both are off
          // unless it sets them. Flags and the environment win in both modes.
          ...(g.config ? {} : { defaults: EMBEDDED_DEFAULTS }),
          env: ctx.env,
        });
      const config = await load();
      const gateway = await createGateway({ config, env: ctx.env, auditSpoolName: 'daemon' });
      for (const adapter of defaultAdapters(config)) gateway.use(adapter);
      // Signals are hooked before listening so a Ctrl-C during startup still closes the data dir cleanly.
      let signalled: (signal: string) => void = () => {};
      const stopped = new Promise<string>((resolve) => {
        signalled = resolve;
      });
      const onInt = () => signalled('SIGINT');
      const onTerm = () => signalled('SIGTERM');
      process.once('SIGINT', onInt);
      process.once('SIGTERM', onTerm);
      // SIGHUP reads the config again (one reload at a time); it never stops the gateway.
      let reloading = Promise.resolve();
      const onHup = () => {
        reloading = reloading.then(async () => {
          const r = await gateway.reload(load);
          if (!r.ok) {
            ctx.err(
              `gatehouse: error: reload of ${r.source} failed, still running the previous config: ${r.error.message}\n` +
                (r.error.hint ? `gatehouse: hint: ${r.error.hint}\n` : ''),
            );
            return;
          }
          ctx.err(
            `gatehouse: reloaded ${r.source}: ${r.applied.length ? `applied ${r.applied.join(', ')}` : 'no resource changed'}\n`,
          );
          if (r.restartRequired.length) {
            ctx.err(
              `gatehouse: warning: changed, but only a restart applies them: ${r.restartRequired.join(', ')}\n`,
            );
          }
        });
        // The audit record of a reload could not be written (reload() refuses nothing else by throwing).
        reloading = reloading.catch((e: unknown) =>
          ctx.err(`gatehouse: error: reload: ${e instanceof Error ? e.message : String(e)}\n`),
        );
      };
      process.on('SIGHUP', onHup);
      let plugins: GatewayPlugins | undefined;
      try {
        // Access request plugins in this process, as their users (checked now: a bad section stops start).
        plugins = startGatewayPlugins(
          gateway,
          config.plugins,
          g.config ? dirname(resolve(g.config)) : process.cwd(),
          (m) => ctx.err(`gatehouse: ${m}\n`),
        );
        const bound = await gateway.listen();
        const proxy = gateway.advertised().publicAddr;
        const pin = gateway.caPin();
        const extra =
          Object.entries(bound.dedicated)
            .map(
              ([name, d]) => `  ${`${name}:`.padEnd(11)}${d.address}
`,
            )
            .join('') +
          (bound.metrics
            ? `  metrics:   http://${bound.metrics.address}/metrics
`
            : '');
        // Export sinks and what an earlier run left in their spools (delivered first).
        const sinks = gateway.audit
          .sinkStatus()
          .map(
            (s) => `  audit:     ${s.name} (${s.type}): ${s.state}, ${s.queued} events spooled
`,
          )
          .join('');
        ctx.out(
          `Gatehouse listening on ${boundAddr(bound)}\n` +
            extra +
            `  cluster:   ${config.clusterName}\n` +
            `  data dir:  ${config.dataDir}\n` +
            `  proxy:     ${proxy}\n` +
            `  web UI:    https://${proxy}/\n` +
            `  CA pin:    --ca-pin ${pin}\n` +
            sinks,
        );
        // On a shared backend another gateway may have printed the invite: keep it working.
        const shared = config.backend.type !== 'sqlite';
        const invite = await gateway.bootstrapAdmin('admin', { keepPending: shared });
        const pending = invite || !shared ? undefined : await gateway.pendingAdminInvite();
        if (pending) {
          ctx.out(
            `\nNo users yet. The first admin (${pending.user}) has an invite pending, printed by the ` +
              `gateway that issued it (expires ${pending.expires}, ` +
              `${relativeTime(new Date(pending.expires), ctx.now())}). For a new one (the old one stops ` +
              `working): gatehouse --config ${g.config ?? 'FILE'} users reset ${pending.user}\n\n`,
          );
        }
        if (invite) {
          ctx.out(
            `\nNo users yet. The first admin (${invite.user}) is created by accepting this invite ` +
              `(expires ${invite.expires}, ${relativeTime(new Date(invite.expires), ctx.now())}):\n\n` +
              `  ${acceptInviteCommand(proxy, pin, invite.token)}\n\n` +
              `or in a browser (check that the certificate's CA matches the pin above):\n\n` +
              `  https://${proxy}/web/invite/${invite.token}\n\n`,
          );
        }
        const signal = await stopped;
        ctx.err(`received ${signal}, shutting down\n`);
      } finally {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
        process.off('SIGHUP', onHup);
        await reloading;
        await plugins?.stop();
        await gateway.close();
        diagnostics_channel.unsubscribe(LOG_CHANNEL, onLog);
      }
    });
}
