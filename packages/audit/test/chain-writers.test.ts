import { execFile } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { eventFiles } from '../src/chain.js';
import { verifyAuditChain } from '../src/verify.js';

const execFileP = promisify(execFile);
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

/** One writer process: `count` events in batches of 1..8, pausing between batches as a busy gateway does. */
const WRITER = `
import { JsonlFileSink } from ${JSON.stringify(DIST)};
const [dir, name, count, start] = process.argv.slice(1);
// Start together: process start-up takes longer than the writing.
await new Promise((r) => setTimeout(r, Math.max(0, Number(start) - Date.now())));
const sink = new JsonlFileSink({ dir, chain: true, maxBytes: 8192 });
let i = 0;
while (i < Number(count)) {
  const n = Math.min(1 + Math.floor(Math.random() * 8), Number(count) - i);
  const batch = [];
  for (let k = 0; k < n; k++, i++) {
    batch.push({ id: name + '-' + String(i).padStart(5, '0'), time: new Date().toISOString(), type: 'user.logout', code: 'GH1002I', cluster: 'c', user: name });
  }
  sink.writeBatch(batch);
  await new Promise((r) => setTimeout(r, Math.random() * 3));
}
await sink.close();
`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gh-chain-procs-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('several processes writing one chained directory', () => {
  it('extend one chain: every event once, in one order that verifies', async () => {
    expect(existsSync(DIST), 'run `npx tsc -b` first').toBe(true);
    const names = ['daemon', 'cli1', 'cli2'];
    const start = String(Date.now() + 2000);
    await Promise.all(
      names.map((n) =>
        execFileP(process.execPath, ['--input-type=module', '-e', WRITER, dir, n, '400', start]),
      ),
    );
    const r = verifyAuditChain({ dir, keys: {} });
    expect(r.problems).toEqual([]);
    expect(r.events).toBe(1200);
    const ids: string[] = [];
    for (const f of eventFiles(dir)) {
      for (const line of (await readFile(join(dir, f), 'utf8')).trimEnd().split('\n')) {
        ids.push((JSON.parse(line) as { id: string }).id);
      }
    }
    expect(new Set(ids).size).toBe(1200);
    // The writers really interleaved (otherwise this test proves nothing about the lock).
    const switches = ids.filter((id, i) => i > 0 && id.split('-')[0] !== ids[i - 1]?.split('-')[0]).length;
    expect(switches).toBeGreaterThan(10);
    // Each writer's own events stay in its order.
    for (const n of names) {
      const mine = ids.filter((id) => id.startsWith(`${n}-`));
      expect(mine).toEqual([...mine].sort());
    }
    // Every writer let go when it closed.
    expect(lstatSync(join(dir, '.chain.lock'), { throwIfNoEntry: false })).toBeUndefined();
  }, 60_000);
});
