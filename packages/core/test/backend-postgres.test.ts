import diagnostics_channel from 'node:diagnostics_channel';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import {
  type Backend,
  POSTGRES_BACKEND_ERROR_CHANNEL,
  POSTGRES_LISTENER_NAME,
  PostgresBackend,
  type PostgresBackendOptions,
} from '../src/backend/index.js';
import { ManualClock } from '../src/clock.js';
import { backendContract } from '../src/testing/backend-contract.js';
import { waitFor } from './helpers.js';

/**
 * The PostgreSQL backend against a real PostgreSQL 15 (shared/PEERS.md):
 * the whole backend contract, then what only a shared SQL server has
 * (LISTEN connections that drop, gateways creating the schema at once).
 */
let server: Postgres;
let schemas = 0;

beforeAll(async () => {
  server = await startPostgres({});
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/** A fresh schema per test, so tests never see each other's rows (NOTIFY is database-wide; that only wakes). */
async function freshSchema(): Promise<string> {
  const name = `t${++schemas}_${process.pid}`;
  await server.sql(`CREATE SCHEMA ${name}`);
  return name;
}

function connection(schema: string): pg.ClientConfig {
  return {
    host: server.dir,
    port: server.port,
    user: 'postgres',
    database: 'postgres',
    options: `-c search_path=${schema}`,
  };
}

function open(schema: string, opts: Partial<PostgresBackendOptions> = {}): Promise<PostgresBackend> {
  return PostgresBackend.open({ connection: connection(schema), sweepIntervalMs: 0, ...opts });
}

backendContract(
  'postgres',
  async (clock) => {
    const schema = await freshSchema();
    const backend = await open(schema, { clock });
    return {
      backend,
      reopen: () => open(schema, { clock }),
      cleanup: () => backend.close(),
    };
  },
  { persistent: true },
);

describe('PostgresBackend on a real PostgreSQL', () => {
  const opened: Backend[] = [];
  afterEach(async () => {
    for (const b of opened.splice(0)) await b.close();
  });
  async function make(schema: string, opts: Partial<PostgresBackendOptions> = {}) {
    const b = await open(schema, opts);
    opened.push(b);
    return b;
  }

  it('a watch whose LISTEN connection is terminated resyncs: no change is missed, and it listens again', async () => {
    const schema = await freshSchema();
    // Polling only every 60 s, and deaf for 1.5 s after the drop: the changes made meanwhile can
    // only arrive through the resync when it listens again.
    const a = await make(schema, { pollIntervalMs: 60_000, safetyPollMs: 60_000, reconnectDelayMs: 1500 });
    const b = await make(schema);
    const ac = new AbortController();
    const it = a.watch('locks/', { signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const first = await b.put('locks/1', 'one');
      expect((await it.next()).value).toEqual({ type: 'put', item: first });

      const pidOf = async () =>
        server.sql(
          `SELECT pid FROM pg_stat_activity WHERE application_name = '${POSTGRES_LISTENER_NAME}' AND query LIKE 'LISTEN%' ORDER BY backend_start`,
        );
      // The watcher is parked waiting for a wake-up (not in the middle of a poll) when the connection drops.
      const pending = it.next();
      await new Promise((r) => setTimeout(r, 300));
      const before = (await pidOf()).split('\n').filter(Boolean);
      expect(before.length).toBeGreaterThanOrEqual(2); // a's and b's listeners
      const errors: unknown[] = [];
      const onError = (m: unknown) => errors.push((m as { error: unknown }).error);
      diagnostics_channel.subscribe(POSTGRES_BACKEND_ERROR_CHANNEL, onError);
      try {
        // Terminate every listener, then change things while a is deaf.
        await server.sql(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '${POSTGRES_LISTENER_NAME}'`,
        );
        await waitFor(() => !a.listening || undefined, 'a to notice its listener is gone');
        const missed = await b.put('locks/2', 'while a was disconnected');
        const gone = await b.delete('locks/1');
        expect(gone).toBe(true);
        const e2 = await pending;
        const e3 = await it.next();
        expect(e2.value).toEqual({ type: 'put', item: missed });
        expect(e3.value).toEqual({ type: 'delete', key: 'locks/1', revision: expect.any(Number) });
        await waitFor(() => a.listening || undefined, 'a to listen again');
        const after = (await pidOf()).split('\n').filter(Boolean);
        expect(after.some((p) => !before.includes(p))).toBe(true);
        // And notifications flow again: with a 60 s poll, only NOTIFY can deliver this one promptly.
        const again = await b.put('locks/3', 'after the resync');
        expect((await it.next()).value).toEqual({ type: 'put', item: again });
        expect(errors.some((e) => /LISTEN connection ended|terminat/i.test(String(e)))).toBe(true);
      } finally {
        diagnostics_channel.unsubscribe(POSTGRES_BACKEND_ERROR_CHANNEL, onError);
      }
    } finally {
      ac.abort();
    }
  });

  it('a watch lives through a server restart: reads fail as unavailable meanwhile, and changes after it arrive', async () => {
    const schema = await freshSchema();
    const a = await make(schema);
    const ac = new AbortController();
    const it = a.watch('r/', { signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const pending = it.next();
      await server.pause();
      try {
        await expect(a.get('r/x')).rejects.toMatchObject({
          code: 'GH_ERR_BACKEND_UNAVAILABLE',
          details: { retryable: true },
          message: expect.stringMatching(/is unreachable/),
        });
      } finally {
        await server.start();
      }
      // A fresh instance writes (the first one's pool reconnects by itself on its next call).
      const b = await make(schema);
      const put = await b.put('r/after', 'written after the restart');
      expect((await pending).value).toEqual({ type: 'put', item: put });
      expect((await a.get('r/after'))?.value).toBe('written after the restart');
      await waitFor(() => a.listening || undefined, 'a to listen again after the restart', 10_000);
    } finally {
      ac.abort();
    }
  });

  it('creates its tables once when several instances start at the same moment', async () => {
    const schema = await freshSchema();
    const all = await Promise.all(Array.from({ length: 6 }, () => make(schema)));
    const revs = await Promise.all(all.map((b, i) => b.put(`race/${i}`, String(i))));
    expect(new Set(revs.map((r) => r.revision)).size).toBe(6);
    const tables = await server.sql(
      `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = '${schema}'`,
    );
    expect(tables).toBe('gatehouse_changes,gatehouse_items,gatehouse_meta');
  });

  it('refuses tables written by a newer layout, saying to upgrade', async () => {
    const schema = await freshSchema();
    await (await make(schema)).close();
    await server.sql(`UPDATE ${schema}.gatehouse_meta SET value = 99 WHERE name = 'layout'`);
    await expect(make(schema)).rejects.toMatchObject({
      code: 'GH_ERR_DATA_DIR_NEWER',
      hint: expect.stringMatching(/^Upgrade gatehouse/),
    });
  });

  it('expires by the clock it is given, and a second instance sweeping reports the delete to watchers of the first', async () => {
    const schema = await freshSchema();
    const clock = new ManualClock();
    const a = await make(schema, { clock });
    const b = await make(schema, { clock });
    const ac = new AbortController();
    const w = a.watch('ws/', { signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const put = await a.put('ws/x', 'v', { ttlMs: 1000 });
      expect((await w.next()).value).toEqual({ type: 'put', item: put });
      clock.advance(1000);
      expect(await b.sweepExpired()).toBe(1);
      expect((await w.next()).value).toEqual({ type: 'delete', key: 'ws/x', revision: put.revision + 1 });
    } finally {
      ac.abort();
    }
  });

  it('refuses a NUL in a key as bad input, not as an outage', async () => {
    const b = await make(await freshSchema());
    await expect(b.put('a\u0000b', 'v')).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });

  it('trims the change log, and a watcher that needed the trimmed rows fails instead of missing events', async () => {
    const clock = new ManualClock();
    const b = await make(await freshSchema(), { clock, changeRetentionMs: 1000, changeRetentionRows: 5 });
    const lagging = b.watch('')[Symbol.asyncIterator]();
    for (let i = 0; i < 20; i++) await b.put(`k/${i}`, String(i));
    expect(await b.trimChanges()).toBe(0);
    clock.advance(1001);
    expect(await b.trimChanges()).toBe(15);
    await expect(lagging.next()).rejects.toMatchObject({
      code: 'GH_ERR_CONFLICT',
      details: { compacted: 15 },
    });
  });
});
