import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../clock.js';
import { GatehouseError } from '../errors.js';
import { backendContract } from '../testing/backend-contract.js';
import { openBackend } from './index.js';
import { SqliteBackend, type SqliteBackendOptions } from './sqlite.js';
import type { Backend } from './types.js';

backendContract(
  'sqlite',
  async (clock) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gh-sqlite-'));
    const file = path.join(dir, 'gatehouse.db');
    // A short poll keeps the cross-instance watch test quick; the sweep timer is off so TTL tests are deterministic.
    const open = () => SqliteBackend.open({ path: file, clock, pollIntervalMs: 20, sweepIntervalMs: 0 });
    const backend = await open();
    return {
      backend,
      reopen: open,
      cleanup: async () => {
        await backend.close();
        await fs.rm(dir, { recursive: true, force: true });
      },
    };
  },
  { persistent: true },
);

describe('SqliteBackend', () => {
  let dir: string;
  const open: Backend[] = [];

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gh-sqlite-'));
  });

  afterEach(async () => {
    for (const b of open.splice(0)) await b.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function make(opts: Partial<SqliteBackendOptions> = {}): Promise<SqliteBackend> {
    const b = await SqliteBackend.open({ path: path.join(dir, 'g.db'), sweepIntervalMs: 0, ...opts });
    open.push(b);
    return b;
  }

  it('creates the database file and its WAL with mode 0600', async () => {
    const prev = process.umask(0o022);
    try {
      const b = await make();
      await b.put('k', 'v');
      expect((await fs.stat(path.join(dir, 'g.db'))).mode & 0o777).toBe(0o600);
      expect((await fs.stat(path.join(dir, 'g.db-wal'))).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(prev);
    }
  });

  it('tightens an existing database file that others can read', async () => {
    await fs.writeFile(path.join(dir, 'g.db'), '', { mode: 0o644 });
    await fs.chmod(path.join(dir, 'g.db'), 0o644);
    await make();
    expect((await fs.stat(path.join(dir, 'g.db'))).mode & 0o777).toBe(0o600);
  });

  it('runs in WAL mode with NORMAL sync and a busy timeout', async () => {
    const b = await make();
    await b.put('k', 'v');
    const db = new Database(path.join(dir, 'g.db'), { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all();
      expect(tables).toEqual([{ name: 'changes' }, { name: 'items' }, { name: 'meta' }]);
      expect(db.prepare('SELECT key, type FROM changes').all()).toEqual([{ key: 'k', type: 'put' }]);
    } finally {
      db.close();
    }
  });

  it('wraps SQLite failures as GH_ERR_BACKEND_UNAVAILABLE with the cause', async () => {
    await fs.writeFile(path.join(dir, 'g.db'), 'this is not a database, just some bytes '.repeat(100), {
      mode: 0o600,
    });
    const err = await make().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as GatehouseError).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    expect((err as GatehouseError).hint).toContain(path.join(dir, 'g.db'));
    expect(((err as GatehouseError).cause as Error).message).toMatch(/not a database/);

    const missingDir = SqliteBackend.open({ path: path.join(dir, 'no', 'such', 'dir', 'g.db') });
    await expect(missingDir).rejects.toMatchObject({ code: 'GH_ERR_BACKEND_UNAVAILABLE' });
  });

  it('refuses a database written by a newer schema version, saying to upgrade', async () => {
    const b = await make();
    await b.close();
    const db = new Database(path.join(dir, 'g.db'));
    db.pragma('user_version = 99');
    db.close();
    await expect(make()).rejects.toMatchObject({
      code: 'GH_ERR_DATA_DIR_NEWER',
      hint: expect.stringMatching(/^Upgrade gatehouse/),
    });
  });

  it('logs a delete in the change log when the sweep removes an expired item', async () => {
    const clock = new ManualClock();
    const b = await make({ clock });
    await b.put('t/a', '1', { ttlMs: 50 });
    await b.put('t/b', '1', { ttlMs: 500 });
    clock.advance(100);
    expect(await b.sweepExpired()).toBe(1);
    const db = new Database(path.join(dir, 'g.db'), { readonly: true });
    try {
      expect(db.prepare('SELECT key FROM items ORDER BY key').all()).toEqual([{ key: 't/b' }]);
      expect(db.prepare('SELECT revision, key, type FROM changes ORDER BY revision').all()).toEqual([
        { revision: 1, key: 't/a', type: 'put' },
        { revision: 2, key: 't/b', type: 'put' },
        { revision: 3, key: 't/a', type: 'delete' },
      ]);
    } finally {
      db.close();
    }
  });

  it('trims old change-log rows, and a watcher that needed them fails instead of missing events', async () => {
    const clock = new ManualClock();
    const b = await make({ clock, changeRetentionMs: 1000, changeRetentionRows: 5 });
    const lagging = b.watch('')[Symbol.asyncIterator]();
    for (let i = 0; i < 20; i++) await b.put(`k/${i}`, String(i));
    expect(await b.trimChanges()).toBe(0); // young rows are kept however many there are
    clock.advance(1001);
    expect(await b.trimChanges()).toBe(15);
    const fresh = b.watch('')[Symbol.asyncIterator]();
    const err = await lagging.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: 'GH_ERR_CONFLICT', details: { compacted: 15 } });
    const p = await b.put('k/new', 'x');
    expect(await fresh.next()).toEqual({ done: false, value: { type: 'put', item: p } });
    await fresh.return?.(undefined);
  });

  it('openBackend({ type: "sqlite" }) opens the file', async () => {
    const b = await openBackend({ type: 'sqlite', path: path.join(dir, 'o.db') }, new ManualClock());
    open.push(b);
    expect(b.kind).toBe('sqlite');
    await b.put('k', 'v');
    expect((await b.get('k'))?.value).toBe('v');
  });
});
