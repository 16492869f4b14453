import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditEventInput } from '../events.js';
import { codeFor } from '../events.js';
import { createIdGenerator } from '../id.js';
import type { AuditQuery } from '../query.js';
import type { AuditIndex } from '../sinks/types.js';

/** What the suite needs of an index besides search: batches and a row count. */
export interface ContractIndex extends AuditIndex {
  writeBatch(events: AuditEvent[], lines?: readonly string[]): void | Promise<void>;
  count(): number | Promise<number>;
}

export interface AuditIndexFixture {
  index: ContractIndex;
  /** Another connection to the same store (a second process, or a second gateway). */
  second(): Promise<ContractIndex>;
  /** Closes `index` and removes what the fixture made. */
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1);

export function makeEvent(input: AuditEventInput, ms: number, gen = createIdGenerator(() => ms)): AuditEvent {
  return {
    id: gen(),
    time: new Date(ms).toISOString(),
    code: codeFor(input),
    cluster: 'acme',
    ...input,
  } as AuditEvent;
}

/**
 * What every audit index answers the same way (SQLite, PostgreSQL): idempotent
 * writes, newest-first keyset pages, the filters, and free text (every word,
 * whole words, case- and accent-insensitive, no operators). Call at the top
 * level of a test file; `make` runs before each test.
 */
export function auditIndexContract(name: string, make: () => Promise<AuditIndexFixture>): void {
  describe(`AuditIndex contract: ${name}`, () => {
    let fx: AuditIndexFixture;
    let index: ContractIndex;

    beforeEach(async () => {
      fx = await make();
      index = fx.index;
    });
    afterEach(async () => {
      await fx.cleanup();
    });

    /** Everything a search can return, walked page by page. */
    async function all(q: AuditQuery): Promise<AuditEvent[]> {
      const out: AuditEvent[] = [];
      let cursor: string | undefined;
      for (let pages = 0; pages < 100; pages++) {
        const r = await index.search(cursor === undefined ? q : { ...q, cursor });
        out.push(...r.events);
        if (!r.next_cursor) return out;
        cursor = r.next_cursor;
      }
      throw new Error('pagination did not end');
    }

    it('writes idempotently by id', async () => {
      const e = makeEvent({ type: 'user.logout', user: 'alice' }, T0);
      await index.write(e);
      await index.write(e);
      await index.write({ ...e, message: 'a replay with the same id' });
      expect(await index.count()).toBe(1);
      expect((await index.search({})).events).toEqual([e]);
    });

    it('finds replayed events by free text once', async () => {
      const gen = createIdGenerator(() => T0);
      const before = makeEvent({ type: 'user.logout', user: 'alice', message: 'zebra before' }, T0, gen);
      const after = makeEvent({ type: 'user.logout', user: 'alice', message: 'zebra after' }, T0 + 1, gen);
      await index.write(before);
      await index.write(after);
      await index.writeBatch([after, before]);
      await index.write(after);
      expect(await index.count()).toBe(2);
      const found = await index.search({ q: 'zebra' });
      expect(found.events.map((e) => e.message)).toEqual(['zebra after', 'zebra before']);
      expect((await index.search({ q: 'after' })).events).toEqual([after]);
    });

    it('indexes a batch as the log serialized it (JSON lines with their newline)', async () => {
      const gen = createIdGenerator(() => T0);
      const a = makeEvent({ type: 'user.logout', user: 'alice', message: 'walrus one' }, T0, gen);
      const b = makeEvent({ type: 'user.logout', user: 'bob', message: 'walrus two' }, T0 + 1, gen);
      await index.writeBatch([a, b], [`${JSON.stringify(a)}\n`, `${JSON.stringify(b)}\n`]);
      expect((await index.search({ q: 'walrus' })).events).toEqual([b, a]);
      expect((await index.search({ q: 'walrus', user: 'bob' })).events).toEqual([b]);
    });

    it('pages through 250 events with limit 100: each exactly once, newest first', async () => {
      const gen = createIdGenerator(() => 0);
      const written: AuditEvent[] = [];
      for (let i = 0; i < 250; i++) {
        // Groups of five share a millisecond, so the id must break ties across page boundaries.
        written.push(makeEvent({ type: 'user.logout', user: 'u' }, T0 + Math.floor(i / 5), gen));
      }
      for (let i = 0; i < written.length; i += 50) await index.writeBatch(written.slice(i, i + 50));
      const p1 = await index.search({ limit: 100 });
      expect(p1.events).toHaveLength(100);
      expect(p1.next_cursor).toBeDefined();
      const p2 = await index.search({ limit: 100, cursor: p1.next_cursor });
      expect(p2.events).toHaveLength(100);
      const p3 = await index.search({ limit: 100, cursor: p2.next_cursor });
      expect(p3.events).toHaveLength(50);
      expect(p3.next_cursor).toBeUndefined();
      const ids = [...p1.events, ...p2.events, ...p3.events].map((e) => e.id);
      expect(ids).toEqual(written.map((e) => e.id).reverse());
    });

    it('says there is no next page when the last page is exactly full', async () => {
      for (let i = 0; i < 10; i++) await index.write(makeEvent({ type: 'gateway.stop' }, T0 + i));
      const r = await index.search({ limit: 10 });
      expect(r.events).toHaveLength(10);
      expect(r.next_cursor).toBeUndefined();
    });

    describe('filters', () => {
      beforeEach(async () => {
        const rows: [AuditEventInput, number][] = [
          [{ type: 'user.login', success: true, method: 'password', mfa: true, user: 'alice' }, 0],
          [{ type: 'user.logout', user: 'alice', message: 'bye from the terminal' }, 1000],
          [{ type: 'role.create', user: 'bob', name: 'dev' }, 2000],
          [{ type: 'user.logout', user: 'bob', message: 'he said "NEAR" (twice) * then left' }, 3000],
          [
            {
              type: 'access.denied',
              user: 'carol',
              resource_kind: 'db',
              resource: 'orders',
              reason: 'no role',
            },
            4000,
          ],
          [{ type: 'user.logout', user: 'Zoë', message: 'Crème brûlée' }, 5000],
        ];
        for (const [input, ms] of rows) await index.write(makeEvent(input, T0 + ms));
      });

      const users = (es: AuditEvent[]) => es.map((e) => `${e.type}:${e.user}`);

      it('by time range: from inclusive, to exclusive', async () => {
        const r = await all({ from: '2026-01-01T00:00:01Z', to: '2026-01-01T00:00:03Z' });
        expect(users(r)).toEqual(['role.create:bob', 'user.logout:alice']);
        expect(await all({ from: '2026-01-02' })).toEqual([]);
      });

      it('by type and by user', async () => {
        expect(users(await all({ types: ['user.logout'] }))).toEqual([
          'user.logout:Zoë',
          'user.logout:bob',
          'user.logout:alice',
        ]);
        expect(users(await all({ types: ['user.login', 'role.create'] }))).toEqual([
          'role.create:bob',
          'user.login:alice',
        ]);
        expect(users(await all({ user: 'alice' }))).toEqual(['user.logout:alice', 'user.login:alice']);
        expect(users(await all({ user: 'alice', types: ['user.login'] }))).toEqual(['user.login:alice']);
      });

      it('by session id, exactly', async () => {
        await index.write(
          makeEvent(
            { type: 'user.logout', user: 'alice', session_id: 's-1', message: 'in a session' },
            T0 + 6000,
          ),
        );
        expect((await all({ session_id: 's-1' })).map((e) => e.message)).toEqual(['in a session']);
        expect(await all({ session_id: 's' })).toEqual([]);
      });

      it('by free text: every word, any field, case- and accent-insensitive', async () => {
        expect(users(await all({ q: 'orders' }))).toEqual(['access.denied:carol']);
        expect(users(await all({ q: 'BYE terminal' }))).toEqual(['user.logout:alice']);
        expect(users(await all({ q: 'bye bob' }))).toEqual([]);
        expect(users(await all({ q: 'creme brulee' }))).toEqual(['user.logout:Zoë']);
      });

      it('treats full-text syntax in user input as plain words', async () => {
        const bob = ['user.logout:bob'];
        expect(users(await all({ q: '"NEAR"' }))).toEqual(bob);
        expect(users(await all({ q: 'NEAR(said twice)' }))).toEqual([]);
        expect(users(await all({ q: '(twice)' }))).toEqual(bob);
        expect(users(await all({ q: 'said AND OR NOT' }))).toEqual([]);
        expect(users(await all({ q: 'he said' }))).toEqual(bob);
        expect(users(await all({ q: 'sa*' }))).toEqual([]);
        expect(users(await all({ q: 'said *' }))).toEqual(bob);
        expect(users(await all({ q: 'user:bob' }))).toEqual(['user.logout:bob', 'role.create:bob']);
        expect(users(await all({ q: '" unbalanced ( quote' }))).toEqual([]);
        expect(users(await all({ q: '^left' }))).toEqual(bob);
        // tsquery operators too: & | ! <-> and a quote must not change the meaning.
        expect(users(await all({ q: "said & !twice | 'x" }))).toEqual([]);
        expect(users(await all({ q: 'said<->then' }))).toEqual([]);
        // Only punctuation: nothing to search for, so no text filter.
        expect(await all({ q: '* " ( )' })).toHaveLength(6);
      });

      it('matches a word of several tokens as a phrase, not as words anywhere', async () => {
        // "said" and "left" are both in bob's message, but not next to each other.
        expect(users(await all({ q: 'said-left' }))).toEqual([]);
        expect(users(await all({ q: 'then-left' }))).toEqual(['user.logout:bob']);
      });

      it('pages a filtered search too', async () => {
        const r1 = await index.search({ types: ['user.logout'], limit: 2 });
        const r2 = await index.search({ types: ['user.logout'], limit: 2, cursor: r1.next_cursor });
        expect(users([...r1.events, ...r2.events])).toEqual([
          'user.logout:Zoë',
          'user.logout:bob',
          'user.logout:alice',
        ]);
        expect(r2.next_cursor).toBeUndefined();
      });
    });

    it('rejects bad cursors and dates with GH_ERR_VALIDATION', async () => {
      await expect(index.search({ cursor: 'garbage!' })).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
      await expect(index.search({ from: 'last tuesday' })).rejects.toMatchObject({
        code: 'GH_ERR_VALIDATION',
        message: expect.stringContaining("'from'"),
      });
    });

    it('lets two connections (two processes or gateways) write to one store, and each finds all', async () => {
      const other = await fx.second();
      try {
        for (let i = 0; i < 20; i++) {
          await (i % 2 === 0 ? index : other).write(makeEvent({ type: 'gateway.stop' }, T0 + i));
        }
        expect(await index.count()).toBe(20);
        expect((await other.search({ limit: 1000 })).events).toHaveLength(20);
        expect((await index.search({ limit: 1000 })).events).toHaveLength(20);
      } finally {
        await other.close?.();
      }
    });
  });
}
