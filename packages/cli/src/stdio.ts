/**
 * How the CLI's output reaches stdout and how the process ends.
 *
 * Node writes to a pipe asynchronously: what the pipe cannot take at once
 * waits in the process. The CLI ends with process.exit() (a command may leave
 * sockets or timers behind), so exiting straight after a large write used to
 * drop everything past the first 64 KiB of an export piped into another
 * program, with exit code 0. Here the exit waits until stdout and stderr have
 * handed everything to the kernel.
 *
 * A reader that goes away (`| head -1`) makes writes fail with EPIPE. Like
 * other Unix tools (which die of SIGPIPE), the command then stops quietly,
 * without an error line, and exits with 141 (128 + SIGPIPE, what a shell
 * reports for them), so `set -o pipefail` scripts can tell that output was
 * cut short.
 */

/** 128 + SIGPIPE (13): the status a shell shows for a program killed by SIGPIPE. */
export const EXIT_BROKEN_PIPE = 141;

type Out = NodeJS.WritableStream & { writableLength: number };

interface StreamState {
  /** The reader went away (EPIPE): nothing more can be delivered. */
  broken: boolean;
  /** Another write error (EIO, ENOSPC on a pipe...): reported, exit 1. */
  failed?: Error;
}

const states = new Map<Out, StreamState>();

function stateOf(s: Out): StreamState {
  let st = states.get(s);
  if (!st) {
    st = { broken: false };
    states.set(s, st);
  }
  return st;
}

function isEpipe(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';
}

function noteError(s: Out, e: Error): void {
  const st = stateOf(s);
  if (isEpipe(e)) st.broken = true;
  else st.failed ??= e;
}

/**
 * Takes over the 'error' events of stdout and stderr (without a listener an
 * EPIPE is an uncaught exception with a stack trace). Call once, first.
 */
export function watchOutput(streams: Out[] = [process.stdout, process.stderr]): void {
  for (const s of streams) {
    stateOf(s);
    s.on('error', (e: Error) => noteError(s, e));
  }
}

/** The error a write to a reader that went away rejects with; reportFailure prints nothing for it. */
export class BrokenPipeError extends Error {
  override name = 'BrokenPipeError';
  readonly code = 'EPIPE';
  constructor() {
    super('the reader of the output went away');
  }
}

/** Whether `e` means the output's reader went away (the command then ends quietly). */
export function isBrokenPipe(e: unknown): boolean {
  return e instanceof BrokenPipeError || isEpipe(e);
}

/** Whether stdout's reader went away during this command. */
export function stdoutBroken(): boolean {
  return stateOf(process.stdout).broken;
}

/**
 * Writes text for the user (tables, JSON, messages). Output a closed reader
 * cannot take is dropped: the command still finishes its work (and closes
 * its data dir cleanly); the exit code says the output was cut short.
 */
export function writeText(s: Out, text: string): void {
  if (stateOf(s).broken) return;
  s.write(text);
}

/**
 * Writes and waits while the reader is slow (backpressure), for output made
 * piece by piece (recordings, paged exports). Rejects with BrokenPipeError
 * once the reader has gone away, which stops the producer.
 */
export function writeWithBackpressure(data: string | Uint8Array, s: Out = process.stdout): Promise<void> {
  const st = stateOf(s);
  if (st.broken) return Promise.reject(new BrokenPipeError());
  if (st.failed) return Promise.reject(st.failed);
  return new Promise<void>((resolve, reject) => {
    let done = false;
    const settle = (err?: Error | null) => {
      if (done) return;
      done = true;
      s.off('drain', onDrain);
      if (err) {
        noteError(s, err);
        reject(isEpipe(err) ? new BrokenPipeError() : err);
      } else resolve();
    };
    const onDrain = () => settle();
    // The callback reports this write's error; 'drain' says the buffer emptied.
    if (s.write(data, (err) => err && settle(err))) settle();
    else s.on('drain', onDrain);
  });
}

/** Resolves once everything written to `s` has been handed to the kernel (or can never be). */
function flushed(s: Out): Promise<void> {
  const st = stateOf(s);
  if (st.broken || st.failed || s.writableLength === 0) return Promise.resolve();
  // Writes complete in order: the callback of an empty write runs after all earlier ones.
  return new Promise((resolve) =>
    s.write('', (err) => {
      if (err) noteError(s, err);
      resolve();
    }),
  );
}

/**
 * Waits for stdout and stderr to be written out, then exits with `code`,
 * or with 141 when stdout's reader went away, or 1 when stdout failed
 * otherwise (said on stderr).
 */
export async function exitWhenWritten(code: number): Promise<never> {
  await flushed(process.stdout);
  const out = stateOf(process.stdout);
  let exit = code;
  if (exit === 0 && out.broken) exit = EXIT_BROKEN_PIPE;
  if (exit === 0 && out.failed) {
    writeText(process.stderr, `error: cannot write the output: ${out.failed.message}\n`);
    exit = 1;
  }
  await flushed(process.stderr);
  process.exit(exit);
}
