import { Command } from 'commander';
import { defineProxySsh, defineScp, defineSsh, type SshCtx } from './commands/ssh-client.js';
import { ClientHome } from './profile.js';
import { reportFailure } from './report.js';
import { writeText } from './stdio.js';

/**
 * The CLI's fast path: `gatehouse ssh`, `gatehouse scp` and `gatehouse proxy
 * ssh` (the ProxyCommand, started once per OpenSSH connection) run with only
 * the modules they need, because loading the whole CLI (the gateway, its
 * storage and adapters) costs several times Node's own start-up and that time
 * is added to every connection. The commands are defined once, in
 * commands/ssh-client.ts, for both paths. Returns undefined for any other
 * command line, which the full CLI then handles.
 */
export async function runFast(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const args = argv.slice(2);
  const verb = args[0] === 'proxy' && args[1] === 'ssh' ? 'proxy ssh' : args[0];
  if (verb !== 'ssh' && verb !== 'scp' && verb !== 'proxy ssh') return undefined;
  // Help and the global options that pick an admin target belong to the full CLI.
  const own = verb === 'proxy ssh' ? args.slice(2) : args.slice(1);
  if (own.some((a) => a === '-h' || a === '--help' || a.startsWith('--data-dir') || a.startsWith('--config')))
    return undefined;
  const out = (t: string) => writeText(process.stdout, t);
  const err = (t: string) => writeText(process.stderr, t);
  const ctx: SshCtx = { env, home: ClientHome.fromEnv(env) };
  const program = new Command('gatehouse')
    .option('--debug', 'print stack traces on errors')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err });
  const commands = [
    defineSsh(program.command('ssh'), ctx),
    defineScp(program.command('scp'), ctx),
    defineProxySsh(program.command('proxy').command('ssh'), ctx),
  ];
  for (const c of [...commands, ...program.commands]) {
    c.exitOverride().configureOutput({ writeOut: out, writeErr: err });
  }
  try {
    await program.parseAsync(argv);
    return ctx.exitCode ?? 0;
  } catch (e) {
    return reportFailure(e, argv, err);
  }
}
