import { GatehouseError } from '@gatehouse/core/lite';
import { CommanderError } from 'commander';
import { UsageError } from './commands/usage.js';
import { EXIT_BROKEN_PIPE, isBrokenPipe } from './stdio.js';

/**
 * How a failed command ends: its message and hint on stderr, and the exit
 * code (0 help, 1 failure, 2 usage, 141 when the output's reader went away,
 * which is no failure to explain). Shared by the full CLI and its fast path.
 */
export function reportFailure(e: unknown, argv: string[], err: (text: string) => void): number {
  if (isBrokenPipe(e)) return EXIT_BROKEN_PIPE;
  const debug = argv.includes('--debug');
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) return 0;
    if (e.code === 'commander.help') return 2; // no verb given: the help went to stderr
    err(`hint: run the command with --help for its options and examples\n`);
    return 2;
  }
  if (e instanceof UsageError) {
    err(`error: ${e.message}\nhint: ${e.hint}\n`);
    if (debug) err(`${e.stack}\n`);
    return 2;
  }
  if (e instanceof GatehouseError) {
    err(`error: ${e.message}\n`);
    if (e.hint) err(`hint: ${e.hint}\n`);
    if (debug)
      err(
        `${e.code}\n${e.stack}\n${e.cause ? `cause: ${(e.cause as Error).stack ?? String(e.cause)}\n` : ''}`,
      );
    return 1;
  }
  const x = e as Error;
  err(`error: ${x?.message ?? String(e)}\n`);
  err(debug ? `${x?.stack}\n` : 'hint: this is unexpected; run again with --debug and report the output\n');
  return 1;
}
