import { spawnSync } from 'node:child_process';
import {
  GatehouseError,
  type JoinMode,
  parseTerminalServerFrame,
  type TerminalClientFrame,
  type TerminalServerFrame,
  validTerminalSize,
} from '@gatehouse/core';
import { type Command, Option } from 'commander';
import type WebSocket from 'ws';
import { type Ctx, profileClient } from '../context.js';
import { currentProfile } from './db.js';

/** Ctrl-]: leaves in either mode (as telnet's escape); it is never sent to the session. */
const LEAVE_KEY = 0x1d;
/** Ctrl-C: an observer types nothing into the session, so it leaves as well. */
const CTRL_C = 0x03;
/** How long to wait for the server's close frame after leaving or after an end/error frame. */
const CLOSE_GRACE_MS = 3000;

/**
 * One chunk of keyboard input: the bytes a peer sends (everything before a
 * leave key) and whether a leave key came. An observer sends nothing.
 */
export function scanInput(chunk: Uint8Array, mode: JoinMode): { send: Uint8Array; leave: boolean } {
  const at = chunk.findIndex((b) => b === LEAVE_KEY || (mode === 'observer' && b === CTRL_C));
  if (mode === 'observer') return { send: new Uint8Array(0), leave: at !== -1 };
  return { send: at === -1 ? chunk : chunk.subarray(0, at), leave: at !== -1 };
}

/** The line printed when the session is over for the joiner. */
export function endMessage(f: { reason?: string | undefined; exit_code?: number | undefined }): string {
  if (f.reason) return `Gatehouse: session ended: ${f.reason}`;
  if (f.exit_code !== undefined) return `Gatehouse: session ended (the shell exited with ${f.exit_code})`;
  return 'Gatehouse: session ended';
}

/**
 * The local window size for a resize frame; undefined when stdout is no
 * terminal or reports a size the protocol refuses (a pty that was never
 * sized says 0x0, and the server would close the socket for it).
 */
export function windowSize(out: {
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}): { cols: number; rows: number } | undefined {
  if (!out.isTTY || !validTerminalSize(out.columns) || !validTerminalSize(out.rows)) return undefined;
  return { cols: out.columns, rows: out.rows };
}

/**
 * Puts the terminal in raw mode, as ssh does, and returns what undoes it.
 * Node's raw mode leaves output processing on (LF becomes CRLF), which
 * breaks full-screen programs that move the cursor down with a bare LF, so
 * `stty -opost` turns that off too; setRawMode(false) restores the modes
 * the terminal had before, output processing included.
 */
function rawMode(stdin: NodeJS.ReadStream): () => void {
  stdin.setRawMode(true);
  // stty acts on its stdin: our terminal. Without stty the screen is still usable, only CRLF-mapped.
  spawnSync('stty', ['-opost'], { stdio: ['inherit', 'ignore', 'ignore'] });
  return () => stdin.setRawMode(false);
}

export function registerJoin(program: Command, ctx: Ctx): void {
  program
    .command('join')
    .description('attach to a live session: everyone sees the same screen (joins and leaves are audited)')
    .argument('<session-id>', 'a session id from gatehouse sessions ls')
    .addOption(
      new Option('--mode <mode>', 'observer watches; peer types into the session too (if a role allows)')
        .choices(['observer', 'peer'])
        .default('observer'),
    )
    .option('-q, --quiet', 'no notice when joining or leaving')
    .addHelpText(
      'after',
      `
Ctrl-] leaves (Ctrl-C too, in observer mode). Joining another user's session
needs a role with join_sessions: [observer] or [observer, peer]; your own
sessions you may always join.

Examples:
  $ gatehouse sessions ls
  $ gatehouse join 6f1c2a9e-...
  $ gatehouse join --mode peer 6f1c2a9e-...`,
    )
    .action(async (id: string, o: { mode: JoinMode; quiet?: boolean }) => {
      ctx.exitCode = await join(ctx, id, o.mode, Boolean(o.quiet));
    });
}

async function join(ctx: Ctx, id: string, mode: JoinMode, quiet: boolean): Promise<number> {
  const client = profileClient(ctx, currentProfile(ctx));
  try {
    // For the notice only: who owns it and where. A user without session:list
    // sees only their own sessions here; the join itself decides access.
    const info = quiet ? undefined : (await client.listSessions()).sessions.find((s) => s.id === id);
    const where = info ? `${info.user}@${info.server}, ` : '';
    return await attach(ctx, client.joinSession(id, mode), {
      mode,
      notice: quiet ? undefined : `Joined session ${id} (${where}${mode} mode). Press Ctrl-] to leave.`,
      left: quiet ? undefined : `Left session ${id}.`,
    });
  } finally {
    client.close();
  }
}

/**
 * Runs the joined socket until the session ends, the joiner leaves or the
 * connection fails; resolves to the exit code. A refused upgrade (or a
 * connection failure before the session frame) rejects with the
 * GatehouseError GatehouseClient puts on 'error', which main prints.
 */
function attach(
  ctx: Ctx,
  ws: WebSocket,
  o: { mode: JoinMode; notice: string | undefined; left: string | undefined },
): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  let restore = () => {};
  // Last resort: a crash between here and the end still gives the terminal back.
  const onExit = () => restore();
  process.once('exit', onExit);

  return new Promise<number>((resolve, reject) => {
    let joined = false;
    let settled = false;
    /** What the server said last: an end or error frame, or that we left. */
    let outcome: { type: 'left' } | Extract<TerminalServerFrame, { type: 'end' | 'error' }> | undefined;
    let graceTimer: NodeJS.Timeout | undefined;

    const send = (frame: TerminalClientFrame) => ws.send(JSON.stringify(frame));
    const sendSize = () => {
      const size = windowSize(stdout);
      if (size && ws.readyState === ws.OPEN) send({ type: 'resize', ...size });
    };
    const onInput = (chunk: Buffer) => {
      const { send: bytes, leave } = scanInput(chunk, o.mode);
      if (bytes.length && ws.readyState === ws.OPEN) ws.send(bytes, { binary: true });
      if (leave) finishSoon({ type: 'left' });
    };
    const onSignal = () => finishSoon({ type: 'left' });
    // A closed stdout (| head) ends the join like leaving does.
    const onStdoutError = () => finishSoon({ type: 'left' });
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    for (const s of signals) process.on(s, onSignal);
    stdout.on('error', onStdoutError);

    const cleanup = () => {
      clearTimeout(graceTimer);
      for (const s of signals) process.off(s, onSignal);
      stdin.off('data', onInput);
      stdin.pause();
      stdout.off('resize', sendSize);
      stdout.off('error', onStdoutError);
      restore();
      restore = () => {};
      process.off('exit', onExit);
    };
    const settle = (code: number, message?: string) => {
      if (settled) return;
      settled = true;
      cleanup();
      // Off the remote screen's current line before our own message.
      if (message) ctx.err(`${process.stderr.isTTY ? '\n' : ''}${message}\n`);
      resolve(code);
    };
    /** Records why the join is over and closes; 'close' settles (or the grace timer does). */
    function finishSoon(why: NonNullable<typeof outcome>) {
      outcome ??= why;
      if (ws.readyState === ws.CONNECTING) ws.terminate();
      else ws.close(1000);
      graceTimer ??= setTimeout(() => ws.terminate(), CLOSE_GRACE_MS);
    }

    const onJoined = () => {
      joined = true;
      if (o.notice) ctx.err(`${o.notice}\n`);
      if (stdin.isTTY) restore = rawMode(stdin);
      stdin.on('data', onInput);
      stdin.resume();
      if (o.mode === 'peer') {
        sendSize();
        stdout.on('resize', sendSize); // SIGWINCH
      }
    };

    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      const bytes = Buffer.isBuffer(data)
        ? data
        : Array.isArray(data)
          ? Buffer.concat(data)
          : Buffer.from(data);
      if (isBinary) {
        // Terminal output as it is; a slow stdout (a pipe) slows the socket down.
        if (!stdout.write(bytes)) {
          ws.pause();
          stdout.once('drain', () => ws.resume());
        }
        return;
      }
      const frame = parseTerminalServerFrame(bytes.toString('utf8'));
      if (frame?.type === 'session' && !joined) onJoined();
      else if (frame?.type === 'end' || frame?.type === 'error') finishSoon(frame);
      // resize: the session's size follows its owner; a joiner's terminal cannot follow it.
    });
    ws.on('error', (err: Error) => {
      if (!joined && !outcome) {
        settled = true;
        cleanup();
        reject(err); // a GatehouseError (the refusal's problem JSON, or why the proxy is unreachable)
        return;
      }
      outcome ??= {
        type: 'error',
        code: err instanceof GatehouseError ? err.code : 'GH_ERR_UPSTREAM_UNAVAILABLE',
        message: err.message,
        ...(err instanceof GatehouseError && err.hint ? { hint: err.hint } : {}),
      };
    });
    ws.on('close', (code: number) => {
      if (!outcome) {
        settle(1, `Gatehouse: the connection to the proxy closed (WebSocket code ${code})`);
      } else if (outcome.type === 'left') {
        settle(0, o.left);
      } else if (outcome.type === 'end') {
        settle(0, endMessage(outcome));
      } else {
        settle(1, `Gatehouse: ${outcome.message}${outcome.hint ? `\nhint: ${outcome.hint}` : ''}`);
      }
    });
  });
}
