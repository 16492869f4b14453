import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend, Item, WatchEvent } from '../backend/types.js';
import { ManualClock } from '../clock.js';
import { GatehouseError, isGatehouseError } from '../errors.js';

export interface BackendFixture {
  backend: Backend;
  /** Opens another instance on the same store (a second process, as far as the backend can tell). */
  reopen?: () => Promise<Backend>;
  /** Closes `backend` (close must be idempotent) and removes whatever the fixture created. */
  cleanup: () => Promise<void>;
}

export type BackendFactory = (clock: ManualClock) => Promise<BackendFixture>;

export interface BackendContractOptions {
  /**
   * The store outlives an instance and can be shared: the fixture must then
   * provide `reopen`, and the persistence and cross-instance watch tests run.
   */
  persistent?: boolean;
}

/**
 * The executable form of the `Backend` contract (backend/types.ts). Call it
 * at the top level of a test file:
 *
 *   backendContract('sqlite', async (clock) => { ... }, { persistent: true });
 *
 * The fixture must use the given ManualClock for expiry and should disable
 * any background expiry sweep (the suite calls `sweepExpired()` itself), so
 * TTL tests are deterministic. Keys are ordered by Unicode code point (UTF-8
 * byte order).
 */
export function backendContract(name: string, make: BackendFactory, opts: BackendContractOptions = {}): void {
  describe(`Backend contract: ${name}`, () => {
    let clock: ManualClock;
    let fx: BackendFixture;
    let b: Backend;
    const others: Backend[] = [];
    const watchers: AbortController[] = [];

    beforeEach(async () => {
      clock = new ManualClock();
      fx = await make(clock);
      b = fx.backend;
    });

    afterEach(async () => {
      for (const ac of watchers.splice(0)) ac.abort();
      for (const o of others.splice(0)) await o.close();
      await fx.cleanup();
    });

    function watch(backend: Backend, prefix: string) {
      const ac = new AbortController();
      watchers.push(ac);
      const it = backend.watch(prefix, { signal: ac.signal })[Symbol.asyncIterator]();
      return {
        ac,
        it,
        async next(): Promise<WatchEvent> {
          const r = await it.next();
          if (r.done) throw new Error(`watch on "${prefix}" ended while an event was expected`);
          return r.value;
        },
      };
    }

    async function rejectsWith(p: Promise<unknown>, code: string): Promise<GatehouseError> {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(GatehouseError);
      expect((err as GatehouseError).code).toBe(code);
      expect((err as GatehouseError).hint).toBeTruthy();
      return err as GatehouseError;
    }

    const keysOf = (items: Item[]) => items.map((i) => i.key);

    it('declares persistence exactly when the fixture can reopen', () => {
      expect(typeof fx.reopen === 'function').toBe(opts.persistent === true);
      expect(typeof b.kind).toBe('string');
    });

    it('get of a missing key is undefined', async () => {
      expect(await b.get('nope')).toBeUndefined();
      expect(await b.get('nope/')).toBeUndefined();
    });

    it('put/get round-trips unicode keys and values and a 1 MiB value', async () => {
      const unicode = 'Grüße, 世界 🙂 \u0000 "quoted" \\ back';
      const put = await b.put('u/ключ/🙂', unicode);
      expect(put).toEqual({ key: 'u/ключ/🙂', value: unicode, revision: put.revision });
      expect(await b.get('u/ключ/🙂')).toEqual(put);

      const big = 'x'.repeat(1024 * 1024 - 2) + 'é';
      const bigItem = await b.put('u/big', big);
      const got = await b.get('u/big');
      expect(got?.value.length).toBe(big.length);
      expect(got?.value === big).toBe(true);
      expect(got?.revision).toBe(bigItem.revision);
      expect(got?.expires).toBeUndefined();
    });

    it('put overwrites and returns the stored item', async () => {
      const a = await b.put('k', 'one');
      const c = await b.put('k', 'two');
      expect(c.value).toBe('two');
      expect(c.revision).toBeGreaterThan(a.revision);
      expect(await b.get('k')).toEqual(c);
    });

    it('revisions strictly increase across keys and operations', async () => {
      const revs: number[] = [];
      revs.push((await b.put('r/a', '1')).revision);
      revs.push((await b.put('r/b', '1')).revision);
      revs.push((await b.create('r/c', '1')).revision);
      revs.push((await b.put('r/a', '2')).revision);
      expect(await b.delete('r/b')).toBe(true);
      const afterDelete = await b.compareAndSwap('r/c', revs[2]!, '2');
      revs.push(afterDelete.revision);
      for (let i = 1; i < revs.length; i++) expect(revs[i]!).toBeGreaterThan(revs[i - 1]!);
      // The delete consumed a revision too, so the CAS is at least two past the previous write.
      expect(afterDelete.revision).toBeGreaterThan(revs[3]! + 1);
    });

    it('create on an existing key throws GH_ERR_ALREADY_EXISTS and leaves it unchanged', async () => {
      const first = await b.create('c/k', 'first');
      expect(first.value).toBe('first');
      await rejectsWith(b.create('c/k', 'second'), 'GH_ERR_ALREADY_EXISTS');
      expect(await b.get('c/k')).toEqual(first);
    });

    it('compareAndSwap succeeds on the current revision and conflicts on a stale one', async () => {
      const v1 = await b.put('cas/k', 'v1');
      const v2 = await b.compareAndSwap('cas/k', v1.revision, 'v2');
      expect(v2.value).toBe('v2');
      expect(v2.revision).toBeGreaterThan(v1.revision);
      expect(await b.get('cas/k')).toEqual(v2);

      await rejectsWith(b.compareAndSwap('cas/k', v1.revision, 'stale'), 'GH_ERR_CONFLICT');
      expect(await b.get('cas/k')).toEqual(v2);

      await rejectsWith(b.compareAndSwap('cas/k', null, 'as-new'), 'GH_ERR_CONFLICT');
      expect(await b.get('cas/k')).toEqual(v2);
    });

    it('compareAndSwap with null creates a missing key; a revision on a missing key conflicts', async () => {
      const made = await b.compareAndSwap('cas/new', null, 'hello');
      expect(made.value).toBe('hello');
      expect(await b.get('cas/new')).toEqual(made);
      await rejectsWith(b.compareAndSwap('cas/missing', 1, 'x'), 'GH_ERR_CONFLICT');
      expect(await b.get('cas/missing')).toBeUndefined();
    });

    it('delete returns true when something was deleted, false otherwise', async () => {
      await b.put('d/k', 'v');
      expect(await b.delete('d/k')).toBe(true);
      expect(await b.get('d/k')).toBeUndefined();
      expect(await b.delete('d/k')).toBe(false);
      expect(await b.delete('d/never')).toBe(false);
    });

    it('range returns exactly the prefix in key order, treating % and _ literally', async () => {
      const keys = [
        'users0',
        'users/b',
        'users/ab',
        'users/a_b',
        'users/a/1',
        'users/a%',
        'users/a',
        'users',
        'usera',
        'uses',
      ];
      for (const k of keys) await b.put(k, `v:${k}`);

      expect(keysOf(await b.range('users/'))).toEqual([
        'users/a',
        'users/a%',
        'users/a/1',
        'users/a_b',
        'users/ab',
        'users/b',
      ]);
      expect(keysOf(await b.range('users/a'))).toEqual([
        'users/a',
        'users/a%',
        'users/a/1',
        'users/a_b',
        'users/ab',
      ]);
      expect(keysOf(await b.range('users/a/'))).toEqual(['users/a/1']);
      expect(keysOf(await b.range('users/a%'))).toEqual(['users/a%']);
      expect(keysOf(await b.range('users/a_'))).toEqual(['users/a_b']);
      expect(keysOf(await b.range('users/c'))).toEqual([]);
      expect(keysOf(await b.range('users'))).toEqual([
        'users',
        'users/a',
        'users/a%',
        'users/a/1',
        'users/a_b',
        'users/ab',
        'users/b',
        'users0',
      ]);
      expect(keysOf(await b.range(''))).toEqual([...keys].sort());
      const all = await b.range('users/a/');
      expect(all).toEqual([{ key: 'users/a/1', value: 'v:users/a/1', revision: all[0]!.revision }]);
    });

    it('range orders by code point and bounds prefixes beyond the BMP correctly', async () => {
      // UTF-16 order would put the astral character (a surrogate pair) first.
      for (const k of ['cp/\u{1F600}', 'cp/\u{E000}', 'cp/\u{D7FF}x', 'cp/z', 'cp/\u{10FFFF}a', 'cq']) {
        await b.put(k, '1');
      }
      expect(keysOf(await b.range('cp/'))).toEqual([
        'cp/z',
        'cp/\u{D7FF}x',
        'cp/\u{E000}',
        'cp/\u{1F600}',
        'cp/\u{10FFFF}a',
      ]);
      expect(keysOf(await b.range('cp/\u{D7FF}'))).toEqual(['cp/\u{D7FF}x']);
      expect(keysOf(await b.range('cp/\u{10FFFF}'))).toEqual(['cp/\u{10FFFF}a']);
    });

    it('range pages with limit and startAfter', async () => {
      const keys = Array.from({ length: 10 }, (_, i) => `pg/${String(i).padStart(2, '0')}`);
      for (const k of [...keys].reverse()) await b.put(k, k);
      await b.put('pg0', 'outside');

      const seen: string[] = [];
      const pages: number[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await b.range(
          'pg/',
          after === undefined ? { limit: 3 } : { limit: 3, startAfter: after },
        );
        pages.push(page.length);
        seen.push(...keysOf(page));
        if (page.length < 3) break;
        after = page[page.length - 1]!.key;
      }
      expect(seen).toEqual(keys);
      expect(pages).toEqual([3, 3, 3, 1]);

      expect(keysOf(await b.range('pg/', { startAfter: 'a' }))).toEqual(keys);
      expect(keysOf(await b.range('pg/', { startAfter: 'pg/05', limit: 2 }))).toEqual(['pg/06', 'pg/07']);
      expect(await b.range('pg/', { startAfter: 'pz' })).toEqual([]);
      expect(await b.range('pg/', { limit: 0 })).toEqual([]);
    });

    it('TTL: visible before expiry, invisible after, and a watcher sees the sweep as a delete', async () => {
      const w = watch(b, 'ttl/');
      const item = await b.put('ttl/k', 'v', { ttlMs: 1000 });
      await b.put('ttl/forever', 'v');
      expect(item.expires?.getTime()).toBe(clock.now().getTime() + 1000);
      expect(await w.next()).toEqual({ type: 'put', item });
      expect((await w.next()).type).toBe('put');

      clock.advance(999);
      expect(await b.get('ttl/k')).toEqual(item);
      expect(keysOf(await b.range('ttl/'))).toEqual(['ttl/forever', 'ttl/k']);

      clock.advance(2);
      expect(await b.get('ttl/k')).toBeUndefined();
      expect(keysOf(await b.range('ttl/'))).toEqual(['ttl/forever']);
      expect(await b.get('ttl/forever')).toBeDefined();

      if (b.sweepExpired) expect(await b.sweepExpired()).toBe(1);
      const ev = await w.next();
      expect(ev).toEqual({ type: 'delete', key: 'ttl/k', revision: expect.any(Number) });
      expect((ev as { revision: number }).revision).toBeGreaterThan(item.revision);
      if (b.sweepExpired) expect(await b.sweepExpired()).toBe(0);
    });

    it('an expired key counts as missing for create, compareAndSwap and delete', async () => {
      const old = await b.put('ttl/a', 'old', { ttlMs: 10 });
      await b.put('ttl/b', 'old', { ttlMs: 10 });
      await b.put('ttl/c', 'old', { ttlMs: 10 });
      clock.advance(10);
      expect((await b.create('ttl/a', 'new')).value).toBe('new');
      await rejectsWith(b.compareAndSwap('ttl/b', old.revision + 1, 'x'), 'GH_ERR_CONFLICT');
      expect((await b.compareAndSwap('ttl/b', null, 'new')).value).toBe('new');
      expect(await b.delete('ttl/c')).toBe(false);
      const fresh = await b.put('ttl/a', 'kept');
      expect(fresh.expires).toBeUndefined();
      clock.advance(60_000);
      expect((await b.get('ttl/a'))?.value).toBe('kept');
    });

    it('rejects a non-positive TTL', async () => {
      await rejectsWith(b.put('ttl/bad', 'v', { ttlMs: 0 }), 'GH_ERR_VALIDATION');
      await rejectsWith(b.put('ttl/bad', 'v', { ttlMs: -5 }), 'GH_ERR_VALIDATION');
      expect(await b.get('ttl/bad')).toBeUndefined();
    });

    it('watch sees puts and deletes under its prefix only, in revision order, none from before it', async () => {
      await b.put('w/a/before', 'old');
      const w = watch(b, 'w/a/');
      await b.put('w/b/x', 'other');
      const p1 = await b.put('w/a/1', 'one');
      await b.put('w/ab', 'sibling');
      expect(await b.delete('w/a/before')).toBe(true);
      const p2 = await b.put('w/a/1', 'two');
      await b.put('w/a0', 'after-bound');
      const end = await b.put('w/a/end', 'marker');

      const events = [await w.next(), await w.next(), await w.next(), await w.next()];
      expect(events).toEqual([
        { type: 'put', item: p1 },
        { type: 'delete', key: 'w/a/before', revision: expect.any(Number) },
        { type: 'put', item: p2 },
        { type: 'put', item: end },
      ]);
      const revs = events.map((e) => (e.type === 'put' ? e.item.revision : e.revision));
      for (let i = 1; i < revs.length; i++) expect(revs[i]!).toBeGreaterThan(revs[i - 1]!);
    });

    it('several watchers on overlapping prefixes each get their events', async () => {
      const all = watch(b, '');
      const narrow = watch(b, 'ov/x/');
      const a = await b.put('ov/y', '1');
      const c = await b.put('ov/x/1', '2');
      expect(await all.next()).toEqual({ type: 'put', item: a });
      expect(await all.next()).toEqual({ type: 'put', item: c });
      expect(await narrow.next()).toEqual({ type: 'put', item: c });
    });

    it('watch stops when its signal aborts', async () => {
      const w = watch(b, 'ab/');
      const pending = w.it.next();
      w.ac.abort();
      expect(await pending).toEqual({ done: true, value: undefined });
      await b.put('ab/x', '1');
      expect(await w.it.next()).toEqual({ done: true, value: undefined });

      const ac = new AbortController();
      ac.abort();
      const dead = b.watch('ab/', { signal: ac.signal })[Symbol.asyncIterator]();
      await b.put('ab/y', '1');
      expect(await dead.next()).toEqual({ done: true, value: undefined });
    });

    it('watch ends when the backend closes, and later calls fail as unavailable', async () => {
      const w = watch(b, 'cl/');
      const pending = w.it.next();
      await b.close();
      expect(await pending).toEqual({ done: true, value: undefined });
      await rejectsWith(b.get('cl/x'), 'GH_ERR_BACKEND_UNAVAILABLE');
      await rejectsWith(b.put('cl/x', '1'), 'GH_ERR_BACKEND_UNAVAILABLE');
      await b.close();
    });

    it('20 concurrent compare-and-swap increments end at exactly 20', async () => {
      await b.put('counter', '0');
      let conflicts = 0;
      const increment = async () => {
        for (;;) {
          const cur = await b.get('counter');
          if (!cur) throw new Error('counter vanished');
          try {
            await b.compareAndSwap('counter', cur.revision, String(Number(cur.value) + 1));
            return;
          } catch (e) {
            if (!isGatehouseError(e, 'GH_ERR_CONFLICT')) throw e;
            conflicts++;
          }
        }
      };
      await Promise.all(Array.from({ length: 20 }, increment));
      expect((await b.get('counter'))?.value).toBe('20');
      // Every losing attempt must have been reported as a conflict, never silently applied.
      expect(conflicts).toBeGreaterThan(0);
    });

    if (opts.persistent) {
      describe('persistence', () => {
        async function reopen(): Promise<Backend> {
          expect(fx.reopen).toBeTypeOf('function');
          const o = await fx.reopen!();
          others.push(o);
          return o;
        }

        it('data and the revision counter survive close and reopen', async () => {
          const a = await b.put('p/a', 'kept');
          await b.put('p/ttl', 'gone', { ttlMs: 100 });
          await b.close();
          const again = await reopen();
          expect(await again.get('p/a')).toEqual(a);
          clock.advance(100);
          expect(await again.get('p/ttl')).toBeUndefined();
          const next = await again.put('p/b', 'new');
          expect(next.revision).toBeGreaterThan(a.revision);
        });

        it('a write through a second instance reaches a watcher on the first', async () => {
          const second = await reopen();
          const w = watch(b, 'x/');
          const fromSecond = await second.put('x/1', 'from-second');
          expect(await w.next()).toEqual({ type: 'put', item: fromSecond });
          expect(await second.delete('x/1')).toBe(true);
          expect(await w.next()).toEqual({ type: 'delete', key: 'x/1', revision: expect.any(Number) });

          const w2 = watch(second, 'x/');
          const fromFirst = await b.put('x/2', 'from-first');
          expect(await w2.next()).toEqual({ type: 'put', item: fromFirst });
        });

        it('revisions stay unique and increasing when two instances interleave writes', async () => {
          const second = await reopen();
          const revs: number[] = [];
          for (let i = 0; i < 5; i++) {
            revs.push((await b.put(`i/${i}`, 'a')).revision);
            revs.push((await second.put(`i/${i}`, 'b')).revision);
          }
          for (let i = 1; i < revs.length; i++) expect(revs[i]!).toBeGreaterThan(revs[i - 1]!);
          const cur = await b.get('i/4');
          await rejectsWith(second.compareAndSwap('i/4', revs[8]!, 'stale'), 'GH_ERR_CONFLICT');
          expect((await second.compareAndSwap('i/4', cur!.revision, 'fresh')).value).toBe('fresh');
        });
      });
    }
  });
}
