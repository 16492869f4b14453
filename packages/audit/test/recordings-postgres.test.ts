import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { PostgresRecordingStore } from '../src/recording/postgres-store.js';
import type { RecordingEvent } from '../src/recording/types.js';

/**
 * Recordings shared through PostgreSQL: a store per "gateway" (own data dir,
 * one database), against a real PostgreSQL 15 that is stopped mid-run.
 */
let server: Postgres;
let root: string;
let schemas = 0;
const open: PostgresRecordingStore[] = [];

beforeAll(async () => {
  server = await startPostgres({});
  root = mkdtempSync(join(tmpdir(), 'gh-rec-pg-'));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function schema(): Promise<string> {
  const name = `r${++schemas}_${process.pid}`;
  await server.sql(`CREATE SCHEMA ${name}`);
  return name;
}

async function store(schemaName: string, gateway: string, retryMs = 50): Promise<PostgresRecordingStore> {
  const s = await PostgresRecordingStore.open({
    dir: join(root, schemaName, gateway),
    gateway,
    connection: {
      host: server.dir,
      port: server.port,
      user: 'postgres',
      database: 'postgres',
      options: `-c search_path=${schemaName}`,
    },
    flushMs: 20,
    retryMs,
  });
  open.push(s);
  return s;
}

async function events(s: PostgresRecordingStore, id: string): Promise<RecordingEvent[]> {
  const out: RecordingEvent[] = [];
  for await (const e of s.read(id)) out.push(e);
  return out;
}

const text = (evs: RecordingEvent[]) =>
  evs.map((e) => (e.type === 'output' ? Buffer.from(e.data).toString() : '')).join('');

async function record(s: PostgresRecordingStore, id: string, chunks: string[]): Promise<void> {
  const r = await s.create({
    session_id: id,
    kind: 'ssh',
    user: 'alice',
    server: 'web1',
    cols: 80,
    rows: 24,
  });
  for (const c of chunks) {
    r.output(Buffer.from(c));
    // Let each land in its own chunk (flushMs 20), so the upload carries several.
    await new Promise((resolve) => setTimeout(resolve, 40));
  }
  await r.close();
}

describe('PostgresRecordingStore', () => {
  it('a recording made on B lists and plays on C, chunk for chunk', async () => {
    const sc = await schema();
    const b = await store(sc, 'gw-b');
    const c = await store(sc, 'gw-c');
    await record(b, 'sess-1', ['one ', 'two ', 'three']);
    await b.flush();
    expect(await c.list()).toEqual([expect.objectContaining({ session_id: 'sess-1', gateway: 'gw-b' })]);
    expect((await c.get('sess-1'))?.ended).toBeDefined();
    await c.assertReadable('sess-1');
    expect(text(await events(c, 'sess-1'))).toBe('one two three');
    const chunks = await server.sql(`SELECT count(*) FROM ${sc}.gatehouse_recording_chunks`);
    expect(Number(chunks.trim().split('\n').pop())).toBeGreaterThan(1);
  });

  it('one still running on B is listed on C, and reading it says where it is and that it is not uploaded', async () => {
    const sc = await schema();
    const b = await store(sc, 'gw-b');
    const c = await store(sc, 'gw-c');
    const r = await b.create({
      session_id: 'live-1',
      kind: 'ssh',
      user: 'bob',
      server: 'db1',
      cols: 80,
      rows: 24,
    });
    r.output(Buffer.from('running'));
    const seen = async () => (await c.list()).some((m) => m.session_id === 'live-1') || undefined;
    await waitFor(seen);
    const err = {
      code: 'GH_ERR_RECORDING_NOT_UPLOADED',
      message: expect.stringMatching(/on gateway gw-b .*not uploaded yet/),
    };
    await expect(c.assertReadable('live-1')).rejects.toMatchObject(err);
    await expect(events(c, 'live-1')).rejects.toMatchObject(err);
    await r.close();
    await b.flush();
    expect(text(await events(c, 'live-1'))).toBe('running');
  });

  it('made while PostgreSQL is down: kept locally, refused on C as not uploaded, uploaded by itself once it is back', async () => {
    const sc = await schema();
    // The first retry comes 5 s after the failed upload: C looks in between, while it is surely pending.
    const b = await store(sc, 'gw-b', 5000);
    const c = await store(sc, 'gw-c');
    // Announced while up, ended and uploaded while down.
    const r = await b.create({
      session_id: 'out-1',
      kind: 'ssh',
      user: 'carol',
      server: 'web2',
      cols: 80,
      rows: 24,
    });
    await waitFor(async () => (await c.get('out-1')) !== undefined || undefined);
    await server.pause();
    try {
      r.output(Buffer.from('during the outage'));
      await r.close();
      expect(await b.pending()).toEqual(['out-1']);
      // The gateway that made it still plays it from its files.
      expect(text(await events(b, 'out-1'))).toBe('during the outage');
    } finally {
      await server.start();
    }
    await expect(c.assertReadable('out-1')).rejects.toMatchObject({
      code: 'GH_ERR_RECORDING_NOT_UPLOADED',
      message: expect.stringMatching(/upload is pending/),
    });
    // No kick from outside: the retry timer alone brings it over.
    await waitFor(async () => ((await b.pending()).length === 0 ? true : undefined));
    expect(text(await events(c, 'out-1'))).toBe('during the outage');
  });

  it('a gateway that comes back uploads what an earlier run left (the next start catches up)', async () => {
    const sc = await schema();
    const b1 = await store(sc, 'gw-b');
    await server.pause();
    try {
      await record(b1, 'left-1', ['left ', 'behind']);
      await b1.close();
      open.splice(open.indexOf(b1), 1);
    } finally {
      await server.start();
    }
    const c = await store(sc, 'gw-c');
    expect(await c.get('left-1')).toBeUndefined();
    const b2 = await store(sc, 'gw-b');
    await b2.flush();
    expect(text(await events(c, 'left-1'))).toBe('left behind');
  });

  it('delete removes the shared copy and the local one', async () => {
    const sc = await schema();
    const b = await store(sc, 'gw-b');
    const c = await store(sc, 'gw-c');
    await record(b, 'del-1', ['x']);
    await b.flush();
    expect(await c.delete('del-1')).toBe(true);
    expect(await c.get('del-1')).toBeUndefined();
    expect(await b.delete('del-1')).toBe(true);
    expect(await b.get('del-1')).toBeUndefined();
    expect(await b.pending()).toEqual([]);
  });
});

async function waitFor<T>(f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
