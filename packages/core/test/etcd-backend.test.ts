import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ETCD_WATCH_CHANNEL,
  EtcdBackend,
  type EtcdBackendOptions,
  type EtcdWatchState,
} from '../src/backend/etcd.js';
import { GatehouseError } from '../src/errors.js';
import { backendContract } from '../src/testing/backend-contract.js';
import { type EtcdServer, startEtcd, startTcpRelay } from '../src/testing/etcd.js';
import { freePort } from '../src/testing/peers.js';

let server: Promise<EtcdServer> | undefined;
const etcd = () => {
  server ??= startEtcd();
  return server;
};
afterAll(async () => {
  if (server) await (await server).cleanup();
});

backendContract(
  'etcd',
  async (clock) => {
    const { endpoint } = await etcd();
    // One etcd for the file; each test gets a prefix of its own, so tests never see each other's keys.
    const prefix = `t-${randomBytes(6).toString('hex')}/`;
    // A long lease grace: etcd's own (real-time) lease expiry must not race the suite's sweepExpired().
    const open = () => EtcdBackend.open({ endpoints: [endpoint], prefix, clock, leaseGraceMs: 120_000 });
    const backend = await open();
    return {
      backend,
      reopen: open,
      cleanup: async () => {
        await backend.close();
        const admin = await EtcdBackend.open({ endpoints: [endpoint], prefix });
        for (const item of await admin.range('')) await admin.delete(item.key);
        await admin.close();
      },
    };
  },
  { persistent: true },
);

/** Retries `fn` until it stops throwing (etcd coming back); no time limit of its own beyond the test's. */
async function eventually<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe('EtcdBackend', () => {
  const closing: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    for (const c of closing.splice(0).reverse()) await c.close();
  });
  const prefix = () => `e-${randomBytes(6).toString('hex')}/`;
  async function open(opts: Partial<EtcdBackendOptions> & { endpoints: string[] }): Promise<EtcdBackend> {
    const b = await EtcdBackend.open({ prefix: prefix(), ...opts });
    closing.push(b);
    return b;
  }

  it('keeps every key under its prefix, so two prefixes on one etcd do not see each other', async () => {
    const { endpoint } = await etcd();
    const p = prefix();
    const a = await open({ endpoints: [endpoint], prefix: `${p}a/` });
    const b = await open({ endpoints: [endpoint], prefix: `${p}b/` });
    const whole = await open({ endpoints: [endpoint], prefix: p });
    await a.put('users/alice', 'A');
    await b.put('users/alice', 'B');
    expect((await a.get('users/alice'))?.value).toBe('A');
    expect(await b.range('')).toEqual([expect.objectContaining({ key: 'users/alice', value: 'B' })]);
    // What etcd holds, seen from the common parent prefix: the values sit under each backend's prefix.
    expect((await whole.range('')).map((i) => i.key)).toEqual(['a/users/alice', 'b/users/alice']);
  });

  it('a watch cut off from etcd resumes and delivers the change made while it was cut', async () => {
    const { clientPort, endpoint } = await etcd();
    const relay = await startTcpRelay(clientPort);
    closing.push(relay);
    const p = prefix();
    const watching = await open({ endpoints: [`http://127.0.0.1:${relay.port}`], prefix: p });
    const writer = await open({ endpoints: [endpoint], prefix: p });
    const ac = new AbortController();
    const it = watching.watch('locks/', { signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const first = await writer.put('locks/one', 'before the cut');
      expect(await it.next()).toEqual({ done: false, value: { type: 'put', item: first } });

      relay.cut();
      const during = await writer.put('locks/two', 'made while the watch was cut');
      const gone = await writer.delete('locks/one');
      expect(gone).toBe(true);
      relay.restore();

      expect(await it.next()).toEqual({ done: false, value: { type: 'put', item: during } });
      const del = await it.next();
      expect(del.value).toEqual({ type: 'delete', key: 'locks/one', revision: during.revision + 1 });
      const after = await writer.put('locks/three', 'after');
      expect(await it.next()).toEqual({ done: false, value: { type: 'put', item: after } });
    } finally {
      ac.abort();
    }
  });

  // Regression: etcd3 resumes a watch from the revision in the last header
  // it received, and the header of etcd's "created" answer is already the
  // current revision while the older events come in a later message. A cut
  // in between skipped them (this test timed out waiting); the backend now
  // resumes from the last revision it delivered.
  it('a watch cut between etcd accepting it and replaying older changes still delivers them (etcd3 resumed past them)', async () => {
    const { clientPort, endpoint } = await etcd();
    const relay = await startTcpRelay(clientPort);
    closing.push(relay);
    const p = prefix();
    const watching = await open({ endpoints: [`http://127.0.0.1:${relay.port}`], prefix: p });
    const writer = await open({ endpoints: [endpoint], prefix: p });
    // Written after `watching` last heard from etcd, so its watch must replay it.
    const missed = await writer.put('locks/alice', 'written before the watch was accepted');
    const onState = (msg: unknown) => {
      const m = msg as EtcdWatchState;
      if (m.backend === watching && m.state === 'connected') {
        diagnostics_channel.unsubscribe(ETCD_WATCH_CHANNEL, onState);
        relay.cut();
        setTimeout(() => relay.restore(), 200);
      }
    };
    diagnostics_channel.subscribe(ETCD_WATCH_CHANNEL, onState);
    const ac = new AbortController();
    try {
      const it = watching.watch('locks/', { signal: ac.signal })[Symbol.asyncIterator]();
      expect(await it.next()).toEqual({ done: false, value: { type: 'put', item: missed } });
    } finally {
      diagnostics_channel.unsubscribe(ETCD_WATCH_CHANNEL, onState);
      ac.abort();
    }
  });

  it('a watch that must resume from a revision etcd compacted away ends with GH_ERR_BACKEND_UNAVAILABLE; a new watch works', async () => {
    const { clientPort, endpoint } = await etcd();
    const relay = await startTcpRelay(clientPort);
    closing.push(relay);
    const p = prefix();
    const watching = await open({ endpoints: [`http://127.0.0.1:${relay.port}`], prefix: p });
    const writer = await open({ endpoints: [endpoint], prefix: p });
    const ac = new AbortController();
    closing.push({ close: async () => ac.abort() });
    const it = watching.watch('locks/', { signal: ac.signal })[Symbol.asyncIterator]();
    const first = await writer.put('locks/a', '1');
    expect((await it.next()).value).toEqual({ type: 'put', item: first });
    relay.cut();
    await writer.put('locks/b', 'lost to compaction');
    const last = await writer.put('locks/c', 'also');
    const admin = new Etcd3({ hosts: endpoint.replace('http://', '') });
    try {
      await admin.kv.compact({ revision: String(last.revision), physical: true });
    } finally {
      admin.close();
    }
    relay.restore();
    const err = await it.next().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as GatehouseError).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    expect((err as GatehouseError).message).toContain(
      `a watch on "locks/" from revision ${first.revision + 1}`,
    );
    // The consumer re-reads what it guards, then watches again: from now, not from the lost revision.
    const again = watching.watch('locks/', { signal: ac.signal })[Symbol.asyncIterator]();
    const next = await writer.put('locks/d', 'after');
    expect((await again.next()).value).toEqual({ type: 'put', item: next });
  });

  it('a watch survives an etcd restart and sees changes made after it', async () => {
    const server = await startEtcd();
    closing.push({ close: () => server.cleanup() });
    const p = prefix();
    const watching = await open({ endpoints: [server.endpoint], prefix: p });
    const ac = new AbortController();
    const it = watching.watch('', { signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const before = await watching.put('k', '1');
      expect((await it.next()).value).toEqual({ type: 'put', item: before });
      await server.stop();
      await server.start();
      const writer = await open({ endpoints: [server.endpoint], prefix: p });
      const after = await eventually(() => writer.put('k', '2'));
      expect((await it.next()).value).toEqual({ type: 'put', item: after });
    } finally {
      ac.abort();
    }
  });

  it('an outage fails requests as GH_ERR_BACKEND_UNAVAILABLE naming the endpoint, and it resumes by itself', async () => {
    const server = await startEtcd();
    closing.push({ close: () => server.cleanup() });
    const b = await open({ endpoints: [server.endpoint], requestTimeoutMs: 1000 });
    await b.put('k', 'v');
    await server.stop();
    const err = await b.get('k').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GatehouseError);
    expect((err as GatehouseError).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    expect((err as GatehouseError).message).toContain(server.endpoint);
    expect((err as GatehouseError).hint).toContain('backend.endpoints');
    await server.start();
    expect((await eventually(() => b.get('k')))?.value).toBe('v');
  });

  it('open() retries an etcd that is not up yet, logging each attempt, and connects once it is', async () => {
    const server = await startEtcd();
    closing.push({ close: () => server.cleanup() });
    await server.stop();
    const logged: string[] = [];
    const opening = EtcdBackend.open({
      endpoints: [server.endpoint],
      prefix: prefix(),
      requestTimeoutMs: 500,
      log: (_level, msg) => logged.push(msg),
    });
    while (logged.length < 2) await new Promise((r) => setTimeout(r, 50));
    await server.start();
    const b = await opening;
    closing.push(b);
    expect(logged[0]).toMatch(/^etcd is not reachable \(attempt 1\); retrying in \d+ ms$/);
    expect((await b.put('k', 'v')).value).toBe('v');
  });

  it('open() gives up after startupTimeoutMs with an error naming the endpoint', async () => {
    const port = await freePort();
    const err = await EtcdBackend.open({
      endpoints: [`http://127.0.0.1:${port}`],
      requestTimeoutMs: 300,
      startupTimeoutMs: 1000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as GatehouseError).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    expect((err as GatehouseError).message).toContain(`http://127.0.0.1:${port}`);
  });

  it('a malformed endpoint or a scheme that does not match backend.tls is a config error naming the setting', async () => {
    for (const [endpoints, tls, pattern] of [
      [['127.0.0.1:2379'], false, /backend\.endpoints: "127\.0\.0\.1:2379" is not an etcd client URL/],
      [['http://etcd'], false, /is not an etcd client URL/],
      [
        ['https://127.0.0.1:2379'],
        false,
        /backend\.endpoints: https:\/\/127\.0\.0\.1:2379 is https, but backend\.tls is not set/,
      ],
      [['http://127.0.0.1:2379'], true, /is http, but backend\.tls is set/],
      [[], false, /backend\.endpoints is empty/],
    ] as const) {
      const err = await EtcdBackend.open({
        endpoints: [...endpoints],
        ...(tls ? { tls: { caPem: 'x' } } : {}),
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as GatehouseError).code).toBe('GH_ERR_CONFIG_INVALID');
      expect((err as GatehouseError).message).toMatch(pattern);
    }
  });

  it('refused credentials fail open() at once as a config error naming backend.auth', async () => {
    const server = await startEtcd();
    closing.push({ close: () => server.cleanup() });
    const admin = new Etcd3({ hosts: server.endpoint.replace('http://', '') });
    try {
      await admin.role('root').create();
      await admin.user('root').create('right');
      await admin.user('root').addRole('root');
      await admin.auth.authEnable({});
    } finally {
      admin.close();
    }
    const err = await EtcdBackend.open({
      endpoints: [server.endpoint],
      auth: { username: 'root', password: 'wrong' },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as GatehouseError).code).toBe('GH_ERR_CONFIG_INVALID');
    expect((err as GatehouseError).message).toContain('backend.auth.username / backend.auth.password_file');
    const ok = await open({ endpoints: [server.endpoint], auth: { username: 'root', password: 'right' } });
    expect((await ok.put('k', 'v')).value).toBe('v');
  });

  it('talks TLS to an etcd that requires client certificates; without one it cannot connect', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gh-etcd-tls-'));
    closing.push({ close: () => rm(dir, { recursive: true, force: true }) });
    const f = (n: string) => path.join(dir, n);
    const ssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    ssl([
      'req',
      '-x509',
      ...ec,
      '-keyout',
      f('ca.key'),
      '-out',
      f('ca.pem'),
      '-subj',
      '/CN=gh-test-ca',
      '-days',
      '1',
    ]);
    for (const [name, usage] of [
      ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth'],
      ['client', 'extendedKeyUsage=clientAuth'],
    ] as const) {
      ssl(['req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`]);
      await writeFile(f(`${name}.ext`), usage);
      ssl(
        [
          'x509',
          '-req',
          '-in',
          f(`${name}.csr`),
          '-CA',
          f('ca.pem'),
          '-CAkey',
          f('ca.key'),
          '-CAcreateserial',
        ].concat(['-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`)]),
      );
    }
    const server = await startEtcd({
      tls: { certFile: f('server.pem'), keyFile: f('server.key'), clientCaFile: f('ca.pem') },
    });
    closing.push({ close: () => server.cleanup() });
    expect(server.endpoint).toMatch(/^https:/);
    const caPem = await readFile(f('ca.pem'));
    const b = await open({
      endpoints: [server.endpoint],
      tls: { caPem, certPem: await readFile(f('client.pem')), keyPem: await readFile(f('client.key')) },
    });
    expect((await b.put('k', 'over TLS')).value).toBe('over TLS');
    expect((await b.get('k'))?.value).toBe('over TLS');

    const err = await EtcdBackend.open({
      endpoints: [server.endpoint],
      tls: { caPem },
      requestTimeoutMs: 500,
      startupTimeoutMs: 1000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as GatehouseError).code).toBe('GH_ERR_BACKEND_UNAVAILABLE');
    expect((err as GatehouseError).message).toContain(server.endpoint);
  });
});
