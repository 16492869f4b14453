import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS, SCHEMA_KEY, SqliteBackend, VERSION } from '@gatehouse/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type Daemon, run, startEmbedded } from './harness.js';

/**
 * Data-dir schema versioning through the BUILT binary (`npx tsc -b` first): `gatehouse start`
 * brings a data dir from before versioning forward, and refuses one a newer Gatehouse wrote.
 */
const daemons: Daemon[] = [];
afterEach(async () => {
  for (const d of daemons.splice(0)) {
    await d.stop();
    rmSync(d.root, { recursive: true, force: true });
  }
});

const ARGS = ['--listen', '127.0.0.1:0', '--mysql-listen', 'off'];

/** Runs `fn` on the stopped daemon's SQLite store. */
async function onStore<T>(d: Daemon, fn: (b: SqliteBackend) => Promise<T>): Promise<T> {
  const b = await SqliteBackend.open({ path: join(d.dataDir, 'gatehouse.db'), sweepIntervalMs: 0 });
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

const schemaOf = (d: Daemon) =>
  onStore(d, async (b) => JSON.parse((await b.get(SCHEMA_KEY))?.value ?? 'null') as unknown);

describe('data-dir schema version', () => {
  it('start records the schema on a new data dir, and brings one from before versioning forward', async () => {
    const first = await startEmbedded({ args: ARGS });
    daemons.push(first);
    await first.stop();
    expect(await schemaOf(first)).toEqual({ version: MIGRATIONS.length, written_by: VERSION });

    // A data dir written before versioning: everything but the version key.
    await onStore(first, (b) => b.delete(SCHEMA_KEY));
    const again = await startEmbedded({ args: ARGS, root: first.root });
    daemons.push(again);
    expect(again.pin).toBe(first.pin); // the same CAs: the data dir was kept, not replaced
    await again.stop();
    expect(await schemaOf(first)).toEqual({ version: MIGRATIONS.length, written_by: VERSION });
  });

  it('start refuses a data dir written by a newer Gatehouse, says to upgrade, and leaves it as it was', async () => {
    const d = await startEmbedded({ args: ARGS });
    daemons.push(d);
    await d.stop();
    const newer = { version: MIGRATIONS.length + 1, written_by: '9.9.9' };
    await onStore(d, (b) => b.put(SCHEMA_KEY, JSON.stringify(newer)));

    const r = await run(['start', '--data-dir', d.dataDir, ...ARGS], {
      env: { GATEHOUSE_HOME: join(d.root, 'home') },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: the data dir ${d.dataDir} was written by Gatehouse 9.9.9 (data schema ${newer.version}); this is Gatehouse ${VERSION}`,
    );
    expect(r.stderr).toMatch(/^hint: Upgrade gatehouse to the version that last wrote this data dir/m);
    expect(r.stdout).not.toContain('listening');
    expect(await schemaOf(d)).toEqual(newer);
  });
});
