import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createGateway, loadConfig } from '@gatehouse/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runClient } from '../../core/test/helpers.js';
import { BIN, type Daemon, PASSWORD, run, startDaemon } from './harness.js';

/**
 * The built binary's output through real pipes (bash, wc, tee, head) next to
 * the same command's output into a file. Every output here is far larger
 * than a pipe's 64 KiB buffer: the CLI used to exit before stdout had
 * drained, so a pipe got the first 64 KiB and the exit code said 0.
 */

const SESSION = 'sess-big-output';
/** Events in the audit log: about 1.3 MB as --json, 0.5 MB as a table. */
const EVENTS = 3000;
/** Recordings for `recordings ls --json` (about 0.1 MB). */
const RECORDINGS = 300;

let d: Daemon;
let home: string;
/** Audit searches end here, so events the gateway writes meanwhile do not change their output. */
let until: string;

/** `bash -c SCRIPT` with the gatehouse command line in "$@"; the logged-in admin's home. */
function bash(script: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return runClient('bash', ['-c', script, 'bash', process.execPath, BIN, ...args], {
    env: { GATEHOUSE_HOME: home, ...env },
    cwd: d.root,
    timeoutMs: 60_000,
  });
}

/** Writes a lot into the daemon's data dir, as other processes of the cluster would. */
async function seed(): Promise<void> {
  const gw = await createGateway({ config: await loadConfig({ file: d.configFile, env: {} }), env: {} });
  try {
    const emitted: Promise<unknown>[] = [];
    for (let i = 0; i < EVENTS; i++) {
      emitted.push(
        gw.audit.emit({
          type: 'user.login',
          user: `user${i % 40}`,
          success: true,
          method: 'password',
          mfa: false,
          message: `login number ${i} with a message long enough to fill the pipe quickly`,
        }),
      );
    }
    await Promise.all(emitted);
    const rec = await gw.recordings.create({
      session_id: SESSION,
      kind: 'ssh',
      user: 'admin',
      login: 'root',
      server: 'node1',
      cols: 80,
      rows: 24,
    });
    for (let i = 0; i < 20_000; i++) rec.output(Buffer.from(`line ${i} of a long session output\r\n`));
    await rec.close();
    for (let i = 0; i < RECORDINGS; i++) {
      const r = await gw.recordings.create({
        session_id: `sess-small-${i}`,
        kind: 'ssh',
        user: 'admin',
        login: 'root',
        server: `node-${i}`,
        cols: 80,
        rows: 24,
      });
      r.output(Buffer.from('hi\r\n'));
      await r.close();
    }
  } finally {
    await gw.close();
  }
}

beforeAll(async () => {
  d = await startDaemon({ cluster: 'pipes' });
  home = join(d.root, 'home-admin');
  const a = await run(
    ['accept-invite', '--proxy', d.proxy, '--ca-pin', d.pin, d.adminToken, '--password-stdin'],
    {
      env: { GATEHOUSE_HOME: home },
      input: `${PASSWORD}\n`,
    },
  );
  expect(a.code, a.stderr).toBe(0);
  const l = await run(
    ['login', '--proxy', d.proxy, '--ca-pin', d.pin, '--user', 'admin', '--password-stdin'],
    {
      env: { GATEHOUSE_HOME: home },
      input: `${PASSWORD}\n`,
    },
  );
  expect(l.code, l.stderr).toBe(0);
  await seed();
  until = new Date(Date.now() + 1).toISOString();
  await new Promise((r) => setTimeout(r, 5));
}, 120_000);

afterAll(async () => {
  if (d) expect(await d.stop(), d.err()).toBe(0);
  if (d) rmSync(d.root, { recursive: true, force: true });
});

/** Commands that print, each with the least size its output must have. */
const PRINTING: { name: string; args: () => string[]; atLeast: number }[] = [
  {
    name: 'audit search --all --json',
    args: () => ['audit', 'search', '--all', '--json', '--until', until],
    atLeast: 1_000_000,
  },
  {
    name: 'audit search --all (table)',
    args: () => ['audit', 'search', '--all', '--until', until],
    atLeast: 400_000,
  },
  { name: 'play --format text', args: () => ['play', SESSION, '--format', 'text'], atLeast: 600_000 },
  { name: 'play --format json', args: () => ['play', SESSION, '--format', 'json'], atLeast: 600_000 },
  {
    name: 'play --format asciicast',
    args: () => ['play', SESSION, '--format', 'asciicast'],
    atLeast: 600_000,
  },
  { name: 'play (replay)', args: () => ['play', SESSION, '--speed', '1000'], atLeast: 600_000 },
  {
    name: 'recordings ls --json',
    args: () => ['recordings', 'ls', '--json', '--limit', String(RECORDINGS + 1)],
    atLeast: 70_000,
  },
];

describe('output into a pipe is the same as into a file, exit code 0', () => {
  for (const c of PRINTING) {
    it(`${c.name}: all of it through a pipe (was cut at 64 KiB, exit code 0)`, async () => {
      const args = c.args();
      const file = join(d.root, `${c.name.replace(/\W+/g, '_')}.file`);
      const piped = join(d.root, `${c.name.replace(/\W+/g, '_')}.piped`);
      const toFile = await bash('"$@" > "$OUT"', args, { OUT: file });
      expect(toFile.stderr).toBe('');
      expect(toFile.code).toBe(0);
      const size = statSync(file).size;
      expect(size).toBeGreaterThan(c.atLeast);

      // tee reads the pipe and wc counts what came through a second one.
      const throughPipe = await bash('set -o pipefail; "$@" | tee "$OUT" | wc -c', args, { OUT: piped });
      expect(throughPipe.stderr).toBe('');
      expect(throughPipe.code).toBe(0);
      expect(Number(throughPipe.stdout.trim())).toBe(size);
      expect(readFileSync(piped).equals(readFileSync(file))).toBe(true);
    });
  }
});

describe('a reader that goes away (| head -1)', () => {
  for (const c of PRINTING) {
    it(`${c.name}: stops quietly with exit code 141, as if by SIGPIPE (no error line, no stack)`, async () => {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash variable, not a template
      const r = await bash('"$@" | head -1; exit "${PIPESTATUS[0]}"', c.args());
      expect(r.stderr).toBe('');
      expect(r.code).toBe(141);
      expect(r.stdout).toMatch(/^[^\n]+\n$/);
    });
  }
});
