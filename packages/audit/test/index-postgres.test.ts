import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../../adapter-postgres/test/peers.js';
import { PostgresAuditIndex, searchQuery, searchVector } from '../src/index-postgres.js';
import { auditIndexContract, makeEvent } from '../src/testing/index-contract.js';

/** The PostgreSQL audit index against a real PostgreSQL 15: the same tests as the SQLite index, and its plans. */
let server: Postgres;
let schemas = 0;

beforeAll(async () => {
  server = await startPostgres({});
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

async function open(): Promise<{ index: PostgresAuditIndex; schema: string }> {
  const schema = `a${++schemas}_${process.pid}`;
  await server.sql(`CREATE SCHEMA ${schema}`);
  const connection = {
    host: server.dir,
    port: server.port,
    user: 'postgres',
    database: 'postgres',
    options: `-c search_path=${schema}`,
  };
  return { index: await PostgresAuditIndex.open({ connection }), schema };
}

auditIndexContract('postgres', async () => {
  const { index, schema } = await open();
  return {
    index,
    second: async () =>
      PostgresAuditIndex.open({
        connection: {
          host: server.dir,
          port: server.port,
          user: 'postgres',
          database: 'postgres',
          options: `-c search_path=${schema}`,
        },
      }),
    cleanup: () => index.close(),
  };
});

describe('PostgresAuditIndex', () => {
  it('builds tsvector and tsquery input itself: positions for phrases, quotes kept as data', () => {
    expect(searchVector('{"user":"bob","message":"Bob\'s Crème"}')).toBe(
      "'user':1 'bob':2,4 'message':3 's':5 'creme':6",
    );
    expect(searchQuery(['user:bob', "it's"])).toBe("('user' <-> 'bob') & ('it' <-> 's')");
    expect(searchQuery([])).toBeUndefined();
  });

  it('uses the GIN index for free text and a b-tree index for every filter', async () => {
    const { index } = await open();
    try {
      await index.write(
        makeEvent({ type: 'user.logout', user: 'alice', message: 'hello' }, Date.UTC(2026, 0, 1)),
      );
      const cursor = Buffer.from(JSON.stringify(['2026-01-01T00:00:00.000Z', 'x'])).toString('base64url');
      const cases: [Parameters<PostgresAuditIndex['search']>[0], RegExp][] = [
        [{ q: 'hello' }, /gatehouse_audit_search/],
        [
          { q: 'hello', user: 'alice', types: ['user.logout'] },
          /gatehouse_audit_(search|user_time|type_time)/,
        ],
        [{ types: ['user.logout'] }, /gatehouse_audit_(type_time|time_id)/],
        [{ user: 'alice', from: '2026-01-01', cursor }, /gatehouse_audit_(user_time|time_id)/],
        [{ session_id: 's-1' }, /gatehouse_audit_(session_time|time_id)/],
        [{ cursor }, /gatehouse_audit_time_id/],
        [{}, /gatehouse_audit_time_id/],
      ];
      for (const [q, want] of cases) {
        const plan = (await index.plan(q, { noSeqScan: true })).join('\n');
        expect({ q, plan }).toEqual({ q, plan: expect.stringMatching(want) });
        expect({ q, plan }).toEqual({ q, plan: expect.not.stringMatching(/Seq Scan/) });
      }
    } finally {
      await index.close();
    }
  });

  it('fails as unavailable when PostgreSQL is gone, so the AuditLog spools and replays', async () => {
    const { index } = await open();
    try {
      await server.pause();
      await expect(
        index.write(makeEvent({ type: 'gateway.stop' }, Date.UTC(2026, 0, 1))),
      ).rejects.toMatchObject({
        code: 'GH_ERR_AUDIT_UNAVAILABLE',
        message: expect.stringMatching(/write failed/),
      });
    } finally {
      await server.start();
    }
    const e = makeEvent({ type: 'gateway.stop' }, Date.UTC(2026, 0, 2));
    await index.write(e);
    expect((await index.search({})).events).toEqual([e]);
    await index.close();
  });
});
