import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerAdmin } from './commands/admin.js';
import { registerBackup } from './commands/backup.js';
import { registerDb } from './commands/db.js';
import { registerDesktops } from './commands/desktops.js';
import { registerInstall } from './commands/install.js';
import { registerJoin } from './commands/join.js';
import { registerKube } from './commands/kube.js';
import { registerMfa } from './commands/mfa.js';
import { registerNodesJoin } from './commands/nodes-join.js';
import { registerPlugin } from './commands/plugin.js';
import { registerProxy } from './commands/proxy.js';
import { registerRecordings } from './commands/recordings.js';
import { registerRequests } from './commands/requests.js';
import { registerSsh } from './commands/ssh.js';
import { registerSso } from './commands/sso.js';
import { registerStart } from './commands/start.js';
import { registerUser } from './commands/user.js';
import { type Ctx, makeCtx } from './context.js';
import { reportFailure } from './report.js';

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function buildProgram(ctx: Ctx): Command {
  const program = new Command('gatehouse')
    .description('Gatehouse: identity-aware access gateway (daemon, client and admin verbs)')
    .option('--data-dir <dir>', 'act on this data dir directly (admin verbs on the gateway host)')
    .option('--config <file>', 'gateway config file (implies local admin on its data dir)')
    .option('--debug', 'print stack traces on errors')
    .version(`gatehouse ${version()}`, '-V, --version', 'print the version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.out(s),
      writeErr: (s) => ctx.err(s),
    })
    .addHelpText(
      'after',
      `
Admin verbs (users, roles, locks, ca, audit) act on the data dir when --data-dir or
--config is given or GATEHOUSE_DATA_DIR is set, and otherwise on the proxy of the
current login. Client state lives in $GATEHOUSE_HOME (default ~/.gatehouse).

Examples:
  $ gatehouse start --data-dir ./data
  $ gatehouse accept-invite --proxy 127.0.0.1:3080 --ca-pin sha256:... TOKEN
  $ gatehouse login --proxy 127.0.0.1:3080 --user admin --ca-pin sha256:...
  $ gatehouse users add alice --roles access --logins root
  $ gatehouse status`,
    );
  // Subcommands inherit exitOverride and output settings only when set before they are added.
  program
    .command('version')
    .description('print the version')
    .action(() => ctx.out(`gatehouse ${version()}\n`));
  registerStart(program, ctx);
  registerUser(program, ctx);
  registerAdmin(program, ctx);
  registerDb(program, ctx);
  registerProxy(program, ctx);
  registerSsh(program, ctx);
  registerDesktops(program, ctx);
  registerSso(program, ctx);
  registerMfa(program, ctx);
  registerJoin(program, ctx);
  registerKube(program, ctx);
  registerNodesJoin(program, ctx);
  registerRecordings(program, ctx);
  registerRequests(program, ctx);
  registerPlugin(program, ctx);
  registerBackup(program, ctx);
  registerInstall(program, ctx);
  for (const c of allCommands(program)) {
    c.exitOverride().configureOutput({ writeOut: (s) => ctx.out(s), writeErr: (s) => ctx.err(s) });
    c.showSuggestionAfterError(true);
  }
  return program;
}

function allCommands(c: Command): Command[] {
  return c.commands.flatMap((s) => [s, ...allCommands(s)]);
}

/** Runs the CLI; resolves to the process exit code (0 ok, 1 failure, 2 usage). */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const ctx = makeCtx(env);
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv);
    return ctx.exitCode ?? 0;
  } catch (e) {
    return reportFailure(e, argv, (t) => ctx.err(t));
  }
}
