import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AccessRequestChange, GatehouseClient } from '../src/index.js';
import { newTlsKey, startGateway, type TestGateway } from './helpers.js';

/**
 * GET /v1/requests/watch over real mutual TLS: the changes a bot user may
 * see, resumable from a cursor, and ended by a lock on the watcher.
 */
const PASSWORD = 'correct horse battery staple';

describe('the access request watch route', () => {
  let t: TestGateway;
  const clients: GatehouseClient[] = [];

  beforeAll(async () => {
    t = await startGateway();
    const gw = t.gw;
    await gw.admin.putRole('kind: role\nname: asker\nallow:\n  request: { roles: [prod, stage] }\n');
    await gw.admin.putRole('kind: role\nname: prod\nallow:\n  db_labels: { env: prod }\n');
    await gw.admin.putRole('kind: role\nname: stage\nallow:\n  db_labels: { env: stage }\n');
    await gw.admin.putRole('kind: role\nname: bot\nallow:\n  review_requests: { roles: [prod] }\n');
    await gw.admin.putRole('kind: role\nname: reviewer\nallow:\n  review_requests: { roles: ["*"] }\n');
    await gw.admin.createUser({ name: 'alice', roles: ['asker'], password: PASSWORD });
    await gw.admin.createUser({ name: 'bob', roles: ['reviewer'], password: PASSWORD });
    await gw.admin.createUser({ name: 'bot', roles: ['bot'], password: PASSWORD });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  async function clientFor(user: string): Promise<GatehouseClient> {
    const key = newTlsKey();
    const anon = new GatehouseClient({ proxy: `127.0.0.1:${t.port}`, caPem: t.caPem });
    const res = await anon.login({ user, password: PASSWORD, tls_public_key: key.publicPem });
    anon.close();
    const c = new GatehouseClient({
      proxy: `127.0.0.1:${t.port}`,
      caPem: t.caPem,
      certPem: res.tls_cert!,
      keyPem: key.privatePem,
    });
    clients.push(c);
    return c;
  }

  /** Collects a watch's changes; `next(pred)` waits for the first unconsumed one matching. */
  function collect(c: GatehouseClient, after: number) {
    const ac = new AbortController();
    const got: AccessRequestChange[] = [];
    let waiter: (() => void) | undefined;
    const done = (async () => {
      try {
        for await (const ch of c.watchAccessRequests(after, ac.signal)) {
          got.push(ch);
          waiter?.();
        }
        return undefined;
      } catch (e) {
        return e;
      } finally {
        waiter?.();
      }
    })();
    let ended = false;
    void done.then(() => {
      ended = true;
    });
    return {
      got,
      done,
      stop: () => ac.abort(),
      async until(pred: (ch: AccessRequestChange) => boolean): Promise<AccessRequestChange> {
        for (;;) {
          const hit = got.find(pred);
          if (hit) return hit;
          if (ended) throw new Error(`the watch ended without the change: ${JSON.stringify(got)}`);
          await new Promise<void>((r) => {
            waiter = r;
          });
        }
      },
    };
  }

  it('tells the bot only requests it may review, in order, and resumes from a cursor without repeats', async () => {
    const bot = await clientFor('bot');
    const w = collect(bot, 0);
    const asAlice = t.gw.authorizedAdmin('alice');
    const stage = await asAlice.createAccessRequest({ roles: ['stage'], reason: 'not for the bot' });
    const prod = await asAlice.createAccessRequest({ roles: ['prod'], reason: 'INC-1' });
    const created = await w.until((c) => c.request.id === prod.id);
    expect(created).toMatchObject({ type: 'access_request.create', request: { state: 'pending' } });
    await t.gw.authorizedAdmin('bob').reviewAccessRequest(prod.id, { verdict: 'approve' });
    const reviewed = await w.until((c) => c.request.id === prod.id && c.type === 'access_request.review');
    expect(reviewed.request.state).toBe('approved');
    expect(reviewed.cursor).toBeGreaterThan(created.cursor);
    await asAlice.dropAccessRequest(prod.id, { reason: 'done' });
    const dropped = await w.until((c) => c.type === 'access_request.drop');
    expect(dropped.request).toMatchObject({ id: prod.id, state: 'dropped' });
    // The stage request is none of the bot's business (it may not review stage).
    expect(w.got.map((c) => c.request.id)).not.toContain(stage.id);
    expect(w.got.map((c) => c.type)).toEqual([
      'access_request.create',
      'access_request.review',
      'access_request.drop',
    ]);
    w.stop();
    expect(await w.done).toBeUndefined();

    // A reconnect after the create: the request's latest state only, once; nothing before the cursor.
    const again = collect(bot, created.cursor);
    const resumed = await again.until((c) => c.request.id === prod.id);
    expect(resumed).toMatchObject({ type: 'access_request.drop', cursor: dropped.cursor });
    const later = await asAlice.createAccessRequest({ roles: ['prod'], reason: 'INC-2' });
    await again.until((c) => c.request.id === later.id);
    expect(again.got.map((c) => c.request.id)).toEqual([prod.id, later.id]);
    again.stop();

    // From the last cursor: nothing stored is told again.
    const quiet = collect(bot, again.got.at(-1)!.cursor);
    const last = await asAlice.createAccessRequest({ roles: ['prod'], reason: 'INC-3' });
    await quiet.until((c) => c.request.id === last.id);
    expect(quiet.got.map((c) => c.request.id)).toEqual([last.id]);
    quiet.stop();
  });

  it('closing the gateway ends an open watch (the watcher then reconnects)', async () => {
    const other = await startGateway();
    let closed = false;
    try {
      await other.gw.admin.putRole('kind: role\nname: bot\nallow:\n  review_requests: { roles: ["*"] }\n');
      await other.gw.admin.createUser({ name: 'bot', roles: ['bot'], password: PASSWORD });
      const key = newTlsKey();
      const anon = new GatehouseClient({ proxy: `127.0.0.1:${other.port}`, caPem: other.caPem });
      const res = await anon.login({ user: 'bot', password: PASSWORD, tls_public_key: key.publicPem });
      anon.close();
      const c = new GatehouseClient({
        proxy: `127.0.0.1:${other.port}`,
        caPem: other.caPem,
        certPem: res.tls_cert!,
        keyPem: key.privatePem,
      });
      clients.push(c);
      const w = collect(c, 0);
      // The stream is open once the route has answered: a change made now arrives on it.
      await other.gw.admin.putRole('kind: role\nname: x\nallow:\n  request: { roles: [bot] }\n');
      await other.gw.admin.createUser({ name: 'x', roles: ['x'], password: PASSWORD });
      await other.gw.authorizedAdmin('x').createAccessRequest({ roles: ['bot'], reason: 'r' });
      await w.until(() => true);
      await other.close();
      closed = true;
      // Ends (an error or the end of the stream), rather than hanging the close or the watcher.
      await w.done;
    } finally {
      if (!closed) await other.close();
    }
  });

  it('a lock on the watching user ends its stream with the refusal; a bad cursor is a 400', async () => {
    const bob = await clientFor('bob');
    const w = collect(bob, 0);
    await w.until(() => true);
    await t.gw.admin.createLock({ target: { user: 'bob' }, message: 'watch test' });
    await t.gw.authorizedAdmin('alice').createAccessRequest({ roles: ['stage'], reason: 'after the lock' });
    expect(await w.done).toMatchObject({ code: 'GH_ERR_USER_LOCKED' });
    const bot = await clientFor('bot');
    const bad = bot.watchAccessRequests(-1 as number);
    await expect(bad.next()).rejects.toMatchObject({ code: 'GH_ERR_VALIDATION' });
  });
});
