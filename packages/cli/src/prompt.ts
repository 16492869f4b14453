import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { GatehouseError } from '@gatehouse/core';

/** A password longer than this is no password: most likely a file piped in by mistake. */
export const MAX_STDIN_SECRET_BYTES = 64 * 1024;

/**
 * Reads one line from stdin: up to the first newline, which is dropped with
 * a carriage return before it (what `echo pw |`, here-strings and Windows
 * files add). The rest of stdin is not read, so `printf 'pw\npw\n'` (the
 * password and its confirmation, as typed at a prompt) sets "pw".
 */
export async function readSecretFromStdin(
  what: string,
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  let newline = false;
  for await (const c of stdin) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    const nl = b.indexOf(0x0a);
    chunks.push(nl >= 0 ? b.subarray(0, nl) : b);
    size += nl >= 0 ? nl : b.length;
    if (size > MAX_STDIN_SECRET_BYTES) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        `the ${what} on stdin is longer than ${MAX_STDIN_SECRET_BYTES} bytes`,
        { hint: `pipe in one line with the ${what}, e.g. printf '%s\\n' "$PASSWORD" | gatehouse ...` },
      );
    }
    if (nl >= 0) {
      newline = true;
      break;
    }
  }
  let text = Buffer.concat(chunks).toString('utf8');
  if (newline && text.endsWith('\r')) text = text.slice(0, -1);
  if (text === '') {
    throw new GatehouseError('GH_ERR_VALIDATION', `no ${what} on the first line of stdin`, {
      hint: `pipe the ${what} in, e.g. printf '%s\\n' "$PASSWORD" | gatehouse ... --password-stdin`,
    });
  }
  return text;
}

function needTty(what: string, flag: string): void {
  if (!process.stdin.isTTY) {
    throw new GatehouseError('GH_ERR_VALIDATION', `cannot ask for the ${what}: stdin is not a terminal`, {
      hint: `pass it with ${flag}`,
    });
  }
}

/** Asks on stderr (stdout may be piped to jq) and reads one line; `hidden` turns echo off. */
export function ask(
  question: string,
  opts: { hidden: boolean; what: string; flag: string },
): Promise<string> {
  needTty(opts.what, opts.flag);
  // readline redraws its own prompt line, so a visible question goes through
  // it; a hidden one is written first because the sink below swallows it.
  if (opts.hidden) process.stderr.write(question);
  // With terminal mode on, readline echoes through `output`; a sink that
  // drops writes keeps the password off the screen.
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const rl = createInterface({
    input: process.stdin,
    output: opts.hidden ? sink : process.stderr,
    terminal: true,
  });
  return new Promise((resolve, reject) => {
    rl.on('SIGINT', () => {
      rl.close();
      process.stderr.write('\n');
      reject(new GatehouseError('GH_ERR_VALIDATION', 'interrupted', { hint: 'run the command again' }));
    });
    rl.question(opts.hidden ? '' : question, (answer) => {
      rl.close();
      if (opts.hidden) process.stderr.write('\n');
      resolve(answer);
    });
  });
}
