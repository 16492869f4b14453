import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemorySink } from '@gatehouse/audit/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Flood } from '../../../core/test/flood.js';
import { newTlsKey, waitFor } from '../../../core/test/helpers.js';
import { encodePacket, encodeSslRequest } from '../../src/index.js';
import { type CertFiles, type MysqlGateway, mariadb, startMysqlGateway, userCert } from '../helpers.js';
import { type Mariadb, opensslSubject, startMariadb } from '../peers.js';

/**
 * The dedicated MySQL port had no handshake limit at all: every connection
 * got a greeting and held a handshake until its deadline, however many one
 * address opened. It now admits like the main port (per source, per port),
 * and its handshake deadline holds for clients that trickle bytes.
 */

const ATTACKER = '127.0.0.2';
const ROLE = `kind: role
name: my-dev
allow:
  db_labels: { engine: mariadb }
  db_users: [alice]
  db_names: [shop]
`;

describe('reliability: one address floods the MySQL port', () => {
  let t: MysqlGateway;
  let db: Mariadb;
  let dir: string;
  let alice: CertFiles;
  const sink = new MemorySink();
  const floods: Flood[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-myflood-'));
    // The adapter's handshake deadline defaults to the listener's.
    t = await startMysqlGateway({}, { listener: { first_byte_timeout: '2s', handshake_timeout: '2s' } }, [
      sink,
    ]);
    db = await startMariadb({ clientCaPem: t.gw.exportCa('mariadb') });
    await t.gw.admin.addDatabase({
      name: 'shop',
      protocol: 'mysql',
      uri: `localhost:${db.port}`,
      ca_pem: db.serverCaPem,
      labels: { engine: 'mariadb' },
    });
    await t.gw.admin.putRole(ROLE, { create: true });
    await t.gw.admin.createUser({ name: 'alice', roles: ['my-dev'], traits: {} });
    alice = await userCert(t.gw, dir, 'alice', {
      user: 'alice',
      roles: ['my-dev'],
      route: { kind: 'db', name: 'shop' },
    });
    const probe = await t.gw.authorities.issueDbClientCert({
      publicKeyPem: newTlsKey().publicPem,
      dbUser: 'alice',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 60_000),
    });
    await db.sql(
      [
        'CREATE DATABASE shop',
        `CREATE USER alice@'%' REQUIRE SUBJECT '${opensslSubject(probe.cert)}'`,
        "GRANT ALL ON shop.* TO alice@'%'",
      ].join(';'),
    );
  }, 120_000);

  afterAll(async () => {
    for (const f of floods) f.destroy();
    await t?.close();
    await db?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const selectOne = () =>
    mariadb([
      '-h127.0.0.1',
      `-P${t.mysqlPort}`,
      '-ualice',
      '-Dshop',
      `--ssl-ca=${t.hostCaFile}`,
      `--ssl-cert=${alice.cert}`,
      `--ssl-key=${alice.key}`,
      '--ssl-verify-server-cert',
      '-N',
      '-B',
      '-e',
      'SELECT 1',
    ]);

  it('serves the mariadb client while 127.0.0.2 holds 1,000 idle and trickling connections; refusals are counted', async () => {
    // 20 connections that answer the greeting with an SSLRequest one byte every 500 ms
    // (the handshake deadline is 2 s), then 1,000 idle ones from the same address.
    const slow = new Flood({
      port: t.mysqlPort,
      from: [ATTACKER],
      idle: 0,
      trickle: 20,
      trickleEveryMs: 500,
      trickleBytes: encodePacket(1, encodeSslRequest(0x0200, 45)),
    });
    floods.push(slow);
    await waitFor(() => slow.stats.trickled >= 20 || undefined, 'the slow connections to trickle');
    const f = new Flood({ port: t.mysqlPort, from: [ATTACKER], idle: 1_000 });
    floods.push(f);
    await f.until(3_000);
    for (let round = 0; round < 3; round++) {
      const r = await selectOne();
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('1');
    }
    expect(f.stats.closedByServer).toBeGreaterThan(3_000);
    // Every flood connection ends on the gateway's side: refused at once, or at the handshake deadline.
    const stats = [await slow.stop(), await f.stop()];
    for (const x of stats) expect(x.failed).toEqual({});
    const reached = stats[0]!.reached + stats[1]!.reached;
    // Admitted connections got the greeting; the others were refused before any byte.
    const greeted = stats[0]!.answered + stats[1]!.answered;
    await t.gw.close();

    const fromAttacker = (a: string | undefined) => a?.startsWith(`${ATTACKER}:`) ?? false;
    const listenerEvents = sink.events.flatMap((e) =>
      (e.type === 'listener.reject' || e.type === 'listener.reject.summary') && e.source === `${ATTACKER}/32`
        ? [e]
        : [],
    );
    let refused = 0;
    for (const e of listenerEvents) {
      expect(e.reason).toBe('too_many_handshakes_from_source');
      refused += e.type === 'listener.reject.summary' ? e.count : 1;
    }
    // One event at once, one summary on close: not one per refused connection.
    expect(listenerEvents.length).toBeLessThanOrEqual(2);
    const timedOut = sink.events.filter(
      (e) => e.type === 'db.reject' && e.reason === 'timeout' && fromAttacker(e.addr?.remote),
    );
    // Each admitted connection timed out (trickling ones included); the counts add up to every connection.
    expect(timedOut.length).toBe(greeted);
    expect(refused + greeted).toBe(reached);
    expect(refused).toBeGreaterThan(3_000);
    // The trickling ones were admitted and held their slots to the deadline.
    expect(greeted).toBeGreaterThanOrEqual(20);
  });
});
