import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '@gatehouse/core';
import type { Command } from 'commander';
import type { Ctx, GlobalOpts } from '../context.js';
import { systemdUnit } from '../systemd.js';
import { examples, usage } from './usage.js';

const UNIT_PATH = '/etc/systemd/system/gatehouse.service';
const DEFAULT_DATA_DIR = '/var/lib/gatehouse';

/** `gatehouse install systemd`: the service unit for this installation (src/systemd.ts says why its shape). */
export function registerInstall(program: Command, ctx: Ctx): void {
  const install = program.command('install').description('set up this machine to run gatehouse as a service');
  install
    .command('systemd')
    .description(`print the systemd unit for gatehouse start (or write it to ${UNIT_PATH})`)
    .option('--write', `write ${UNIT_PATH} (as root) instead of printing it`)
    .option(
      '--user <name>',
      'run as this user with the full sandbox (gateway only: needs builtin_node: false)',
    )
    .addHelpText(
      'after',
      examples(`  $ gatehouse install systemd --config /etc/gatehouse.yaml --user gatehouse --write
  $ gatehouse install systemd --data-dir /var/lib/gatehouse > gatehouse.service

ExecStart runs this installation's gatehouse with --config FILE, or --data-dir DIR (default
${DEFAULT_DATA_DIR}) and the embedded defaults. With the built-in SSH node service (the
embedded defaults, builtin_node: true) the unit runs as root without a sandbox: sessions
start as other users inside it. --user gets ProtectSystem=strict (only the data dir
writable), ProtectHome, PrivateTmp, NoNewPrivileges and only CAP_NET_BIND_SERVICE.
Then: systemctl daemon-reload && systemctl enable --now gatehouse`),
    )
    .action(async function (this: Command, o: { write?: boolean; user?: string }) {
      const g = this.optsWithGlobals<GlobalOpts>();
      const config = g.config ? path.resolve(g.config) : undefined;
      // The same rule as `start`: without a config file the embedded defaults run the built-in node.
      const loaded = config
        ? await loadConfig({ file: config, overrides: { dataDir: g.dataDir }, env: {} })
        : undefined;
      const dataDir = loaded?.dataDir ?? path.resolve(g.dataDir ?? DEFAULT_DATA_DIR);
      const builtinNode = loaded ? loaded.builtinNode : true;
      if (o.user === 'root') throw usage('--user root is the default', 'leave --user out to run as root');
      if (o.user && !/^[a-z_][a-z0-9_-]*\$?$/.test(o.user)) {
        throw usage(
          `--user ${JSON.stringify(o.user)} is not a user name`,
          'pass a system user such as gatehouse',
        );
      }
      if (o.user && builtinNode) {
        throw usage(
          `--user ${o.user}: the built-in SSH node service starts sessions as other users and needs root`,
          config
            ? `set builtin_node: false in ${config} (the gateway then runs as ${o.user}), or leave --user out`
            : 'pass --config FILE with builtin_node: false (the embedded defaults run the node), or leave --user out',
        );
      }
      const unit = systemdUnit({
        node: process.execPath,
        script: fileURLToPath(new URL('../../bin/gatehouse.js', import.meta.url)),
        dataDir,
        config,
        user: o.user,
      });
      if (!o.write) {
        ctx.out(unit);
        return;
      }
      mkdirSync(path.dirname(UNIT_PATH), { recursive: true });
      writeFileSync(UNIT_PATH, unit, { mode: 0o644 });
      ctx.out(
        `Wrote ${UNIT_PATH}. Start it with: systemctl daemon-reload && systemctl enable --now gatehouse\n`,
      );
    });
}
