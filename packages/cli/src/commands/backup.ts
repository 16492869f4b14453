import { createBackup, loadConfig, restoreBackup } from '@gatehouse/core';
import type { Command } from 'commander';
import { type Ctx, type GlobalOpts, wantsLocal } from '../context.js';
import { readSecretFromStdin } from '../prompt.js';
import { examples, usage } from './usage.js';

const PASSPHRASE_ENV = 'GATEHOUSE_BACKUP_PASSPHRASE';

async function passphrase(ctx: Ctx, fromStdin: boolean | undefined): Promise<string> {
  if (fromStdin) return readSecretFromStdin('passphrase');
  const env = ctx.env[PASSPHRASE_ENV];
  if (env) return env;
  throw usage('no backup passphrase given', `pass --passphrase-stdin or set ${PASSPHRASE_ENV}`);
}

/** `gatehouse backup` and `gatehouse restore` (core/src/backup/backup.ts). */
export function registerBackup(program: Command, ctx: Ctx): void {
  program
    .command('backup')
    .description(
      'write a sealed, consistent copy of the data dir (users, roles, resources, CA keys) while it serves',
    )
    .requiredOption('--out <file>', 'the backup file to write (mode 0600)')
    .option('--passphrase-stdin', `read the passphrase from stdin (else $${PASSPHRASE_ENV})`)
    .addHelpText(
      'after',
      examples(`  $ GATEHOUSE_BACKUP_PASSPHRASE=... gatehouse backup --data-dir /var/lib/gatehouse --out gh.backup

It runs on the gateway host next to the running gateway. The file holds the database
and the secrets key, sealed with the passphrase (scrypt, AES-256-GCM): keep them apart.
The audit log (DATA_DIR/audit) and recordings (DATA_DIR/recordings) are append-only
files: copy them as files.

With backend: { type: postgres } or { type: etcd } the state is not in the data dir:
backup refuses and names the tool (pg_dump; etcdctl snapshot save). Keep the secrets
key with that dump: the CA keys in the database are sealed with it.`),
    )
    .action(async function (this: Command, o: { out: string; passphraseStdin?: boolean }) {
      const g = this.optsWithGlobals<GlobalOpts>();
      if (!wantsLocal(g, ctx.env)) {
        throw usage('backup needs the data dir', 'pass --data-dir DIR or --config FILE on the gateway host');
      }
      const config = await loadConfig({ file: g.config, overrides: { dataDir: g.dataDir }, env: ctx.env });
      // Before the passphrase: a shared backend is refused (its own tool backs it up), whatever was typed.
      const pw = config.backend.type === 'sqlite' ? await passphrase(ctx, o.passphraseStdin) : '';
      const info = await createBackup({
        dataDir: config.dataDir,
        out: o.out,
        passphrase: pw,
        env: ctx.env,
        backend: config.backend,
      });
      ctx.out(
        `Backup of cluster ${info.cluster} (${config.dataDir}) written to ${o.out} (${info.bytes} bytes).\n`,
      );
    });

  program
    .command('restore')
    .description(
      'unseal a backup into a new data dir (refuses a non-empty dir, a damaged file, another cluster)',
    )
    .argument('<file>', 'a file written by gatehouse backup')
    .requiredOption('--cluster <name>', 'the cluster the backup must be of')
    .option('--passphrase-stdin', `read the passphrase from stdin (else $${PASSPHRASE_ENV})`)
    .addHelpText(
      'after',
      examples(`  $ GATEHOUSE_BACKUP_PASSPHRASE=... gatehouse restore gh.backup --data-dir /var/lib/gatehouse --cluster acme
  $ gatehouse start --data-dir /var/lib/gatehouse`),
    )
    .action(async function (this: Command, file: string, o: { cluster: string; passphraseStdin?: boolean }) {
      const g = this.optsWithGlobals<GlobalOpts>();
      if (!g.dataDir) throw usage('restore needs --data-dir', 'pass the new, empty data dir: --data-dir DIR');
      const pw = await passphrase(ctx, o.passphraseStdin);
      const info = await restoreBackup({
        file,
        dataDir: g.dataDir,
        passphrase: pw,
        expectCluster: o.cluster,
      });
      ctx.out(
        `Restored cluster ${info.cluster} (backup of ${info.created}) into ${g.dataDir}.\n` +
          `Start it with: gatehouse start --data-dir ${g.dataDir} (or a config with data_dir: ${g.dataDir})\n`,
      );
    });
}
