import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { GatehouseError } from '@gatehouse/core';

/** Reads all of stdin; drops one trailing newline (what `echo pw |` and here-strings add). */
export async function readSecretFromStdin(
  what: string,
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  const text = stripOneNewline(Buffer.concat(chunks).toString('utf8'));
  if (text === '') {
    throw new GatehouseError('GH_ERR_VALIDATION', `no ${what} on stdin`, {
      hint: `pipe the ${what} in, e.g. printf '%s' "$PASSWORD" | gatehouse ... --password-stdin`,
    });
  }
  return text;
}

export function stripOneNewline(s: string): string {
  if (s.endsWith('\r\n')) return s.slice(0, -2);
  if (s.endsWith('\n')) return s.slice(0, -1);
  return s;
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
